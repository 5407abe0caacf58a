/* SPDX-License-Identifier: Apache-2.0 */
/* crgw_fs_make_parents(): what it creates, with which mode, and the symbolic links it refuses to follow. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "tap.h"

static char base[64];

/* base + "/" + rel, in one of a few rotating buffers so that a call can take two. */
static const char *at(const char *rel)
{
	static char bufs[4][4200];
	static unsigned next;
	char *b = bufs[next++ % 4];

	snprintf(b, sizeof(bufs[0]), "%s/%s", base, rel);
	return b;
}

static bool is_dir_mode(const char *path, mode_t mode)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == mode;
}

static bool missing(const char *path)
{
	struct stat st;

	return lstat(path, &st) != 0 && errno == ENOENT;
}

int main(void)
{
	char why[4400], cwd[4200];
	bool root = geteuid() == 0;
	int err;

	snprintf(base, sizeof(base), "/tmp/crgw-test-fsutil-XXXXXX");
	if (!mkdtemp(base) || !getcwd(cwd, sizeof(cwd)))
		return 1;
	/* An operator's tight umask must not narrow what the gateway creates. */
	umask(077);

	/* ---- creating */
	err = crgw_fs_make_parents(at("a/b/c/control.sock"), 0755, why, sizeof(why));
	tap_result(err == 0, "missing parents are created (%d %s)", err, why);
	tap_result(is_dir_mode(at("a"), 0755) && is_dir_mode(at("a/b"), 0755) && is_dir_mode(at("a/b/c"), 0755),
		   "each with exactly mode 0755 under umask 077");
	tap_result(missing(at("a/b/c/control.sock")), "the last component itself is not created");

	mkdir(at("tight"), 0700);
	err = crgw_fs_make_parents(at("tight/audit.log"), 0755, why, sizeof(why));
	tap_result(err == 0 && is_dir_mode(at("tight"), 0700), "an existing directory is left as it is");

	err = crgw_fs_make_parents(at("s1/state///"), 0755, why, sizeof(why));
	tap_result(err == 0 && is_dir_mode(at("s1"), 0755) && missing(at("s1/state")),
		   "trailing slashes: the parent of a directory path, not the directory");

	err = crgw_fs_make_parents(at("d1/../d2/./d3/x"), 0755, why, sizeof(why));
	tap_result(err == 0 && is_dir_mode(at("d2/d3"), 0755) && is_dir_mode(at("d1"), 0755),
		   "'.' and '..' components are walked like the kernel does");

	tap_result(chdir(base) == 0 && crgw_fs_make_parents("r1/r2/x", 0700, why, sizeof(why)) == 0 &&
			   is_dir_mode(at("r1/r2"), 0700),
		   "a relative path is taken from the current directory, with the mode asked for");
	tap_result(crgw_fs_make_parents("bare", 0755, why, sizeof(why)) == 0 && missing(at("bare")),
		   "a bare name needs nothing");
	tap_result(chdir(cwd) == 0, "back to the test's directory");

	/* ---- errors */
	fclose(fopen(at("file"), "w"));
	err = crgw_fs_make_parents(at("file/sub/x"), 0755, why, sizeof(why));
	tap_result(err == -ENOTDIR && strstr(why, at("file")) && strstr(why, "Not a directory"),
		   "a file on the way: -ENOTDIR, naming it (%s)", why);
	tap_result(crgw_fs_make_parents(at("file/sub/x"), 0755, NULL, 0) == -ENOTDIR,
		   "no room for the reason is fine");

	/* ---- links the caller's own or root's: followed */
	mkdir(at("real"), 0755);
	tap_result(symlink(at("real"), at("abs")) == 0 && symlink("real", at("rel")) == 0 &&
			   symlink(at("later"), at("dangling")) == 0,
		   "links set up");
	err = crgw_fs_make_parents(at("abs/n1/n2/x"), 0755, why, sizeof(why));
	tap_result(err == 0 && is_dir_mode(at("real/n1/n2"), 0755),
		   "an absolute link in a private directory is followed (%s)", why);
	err = crgw_fs_make_parents(at("rel/m1/x"), 0755, why, sizeof(why));
	tap_result(err == 0 && is_dir_mode(at("real/m1"), 0755), "a relative link is followed from its directory (%s)",
		   why);
	err = crgw_fs_make_parents(at("dangling/z/x"), 0755, why, sizeof(why));
	tap_result(err == 0 && is_dir_mode(at("later/z"), 0755), "a dangling link's target is created (%s)", why);

	tap_result(symlink("loop2", at("loop1")) == 0 && symlink("loop1", at("loop2")) == 0, "a loop of links");
	err = crgw_fs_make_parents(at("loop1/x/y"), 0755, why, sizeof(why));
	tap_result(err == -ELOOP, "a loop ends with -ELOOP (%s)", why);

	/* ---- links someone else could have planted: refused */
	mkdir(at("shared"), 0755);
	chmod(at("shared"), 0777);
	symlink(at("real"), at("shared/lnk"));
	err = crgw_fs_make_parents(at("shared/lnk/p1/x"), 0755, why, sizeof(why));
	tap_result(err == -EPERM && missing(at("real/p1")) && strstr(why, "not followed") &&
			   strstr(why, at("shared/lnk")),
		   "a link in a world-writable directory is not followed (%s)", why);
	chmod(at("shared"), 01777);
	err = crgw_fs_make_parents(at("shared/lnk/p1/x"), 0755, why, sizeof(why));
	tap_result(err == -EPERM && missing(at("real/p1")), "nor in a sticky one like /tmp");
	chmod(at("shared"), 0775);
	err = crgw_fs_make_parents(at("shared/lnk/p1/x"), 0755, why, sizeof(why));
	tap_result(err == -EPERM && missing(at("real/p1")), "nor in a group-writable one");
	/* Deeper: a trusted link leading into an untrusted directory whose link is then refused. */
	symlink(at("shared"), at("to-shared"));
	err = crgw_fs_make_parents(at("to-shared/lnk/p1/x"), 0755, why, sizeof(why));
	tap_result(err == -EPERM && missing(at("real/p1")), "nor after a trusted link led there");

	if (root) {
		mkdir(at("theirs"), 0755);
		symlink(at("real"), at("theirs/lnk"));
		tap_result(chown(at("theirs"), 65534, 65534) == 0, "a directory owned by another user");
		err = crgw_fs_make_parents(at("theirs/lnk/q1/x"), 0755, why, sizeof(why));
		tap_result(err == -EPERM && missing(at("real/q1")),
			   "a link in another user's directory is not followed");

		symlink(at("real"), at("their-link"));
		tap_result(lchown(at("their-link"), 65534, 65534) == 0, "a link owned by another user");
		err = crgw_fs_make_parents(at("their-link/q2/x"), 0755, why, sizeof(why));
		tap_result(err == -EPERM && missing(at("real/q2")), "it is not followed even in a private directory");
	} else {
		printf("ok %u - # SKIP the other-owner cases need root\n", ++tap_count);
	}

	err = crgw_fs_make_parents(at("real/ok/x"), 0755, why, sizeof(why));
	tap_result(err == 0 && is_dir_mode(at("real/ok"), 0755), "plain directories still work after all that (%s)",
		   why);

	{
		char cmd[200];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
		tap_result(system(cmd) == 0, "clean up");
	}
	return tap_done();
}
