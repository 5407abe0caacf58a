/* SPDX-License-Identifier: Apache-2.0 */
/* Policies by hash (policy_store.h): one file per CompiledPolicy, named by its hash, written atomically. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crgw/policy.h"
#include "fsutil.h"
#include "policy_store.h"

/* A stored document is at most what the control API takes in one body. */
#define DOC_MAX CRGW_COMPILED_MAX_BYTES

static int store_fd = -1;
static unsigned tmp_seq;

/* Temporary files of a write that a killed gateway never finished. */
static void remove_leftovers(void)
{
	int fd = openat(store_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, ".tmp-", 5))
			unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
}

int crgw_policy_store_open(const char *dir, char *err, size_t errlen)
{
	char why[512];
	int rc = crgw_fs_make_parents(dir, 0755, why, sizeof(why));

	if (rc) {
		snprintf(err, errlen, "%s", why);
		return rc;
	}
	if (mkdir(dir, 0700) && errno != EEXIST) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return rc;
	}
	store_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (store_fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return rc;
	}
	remove_leftovers();
	return 0;
}

void crgw_policy_store_close(void)
{
	if (store_fd >= 0)
		close(store_fd);
	store_fd = -1;
}

/* "sha256:<64 lowercase hex>" or the hex alone → the 64 hex digits; -EINVAL for anything else. */
static int hex_of(const char *hash, char hex[65])
{
	if (!strncmp(hash, "sha256:", 7))
		hash += 7;
	if (strlen(hash) != 64)
		return -EINVAL;
	for (int i = 0; i < 64; i++)
		if (!((hash[i] >= '0' && hash[i] <= '9') || (hash[i] >= 'a' && hash[i] <= 'f')))
			return -EINVAL;
	memcpy(hex, hash, 65);
	return 0;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int crgw_policy_store_put(const char *hash, const char *json, size_t len, bool *created)
{
	char hex[65], name[80], tmp[96];
	struct stat st;
	int fd, rc;

	*created = false;
	if (store_fd < 0)
		return -EBADF;
	if (hex_of(hash, hex) || len > DOC_MAX)
		return -EINVAL;
	snprintf(name, sizeof(name), "%s.json", hex);
	if (fstatat(store_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
		return 0;
	snprintf(tmp, sizeof(tmp), ".tmp-%s-%d-%u", hex, (int)getpid(), tmp_seq++);
	fd = openat(store_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	rc = write_all(fd, json, len);
	if (!rc && fsync(fd))
		rc = -errno;
	if (close(fd) && !rc)
		rc = -errno;
	if (!rc && renameat(store_fd, tmp, store_fd, name))
		rc = -errno;
	if (rc) {
		unlinkat(store_fd, tmp, 0);
		return rc;
	}
	fsync(store_fd);
	*created = true;
	return 0;
}

int crgw_policy_store_get(const char *hash, char **json, size_t *len)
{
	char hex[65], name[80], err[256];
	struct crgw_policy *policy = NULL;
	struct stat st;
	char *buf = NULL;
	size_t have = 0;
	int fd, rc = 0;

	*json = NULL;
	if (store_fd < 0)
		return -EBADF;
	if (hex_of(hash, hex))
		return -EINVAL;
	snprintf(name, sizeof(name), "%s.json", hex);
	fd = openat(store_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > DOC_MAX) {
		close(fd);
		return -EBADMSG;
	}
	buf = malloc((size_t)st.st_size + 1);
	while (buf && have < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + have, (size_t)st.st_size - have);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EBADMSG;
			break;
		}
		have += (size_t)n;
	}
	close(fd);
	if (!buf)
		return -ENOMEM;
	buf[have] = '\0';
	/* Never hand out a document that does not match its name: the file may have been damaged since. */
	if (!rc &&
	    (crgw_policy_load(buf, have, &policy, err, sizeof(err)) || strcmp(crgw_policy_hash(policy) + 7, hex)))
		rc = -EBADMSG;
	crgw_policy_unref(policy);
	if (rc) {
		free(buf);
		return rc;
	}
	*json = buf;
	*len = have;
	return 0;
}

int crgw_policy_store_list(void (*fn)(const struct crgw_policy_store_entry *e, void *arg), void *arg)
{
	int fd = store_fd >= 0 ? openat(store_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	int count = 0;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		struct crgw_policy_store_entry e;
		char hex[65];
		struct stat st;
		size_t n = strlen(de->d_name);

		if (n != 69 || strcmp(de->d_name + 64, ".json"))
			continue;
		snprintf(hex, sizeof(hex), "%.64s", de->d_name);
		if (hex_of(hex, hex) || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode))
			continue;
		snprintf(e.hash, sizeof(e.hash), "sha256:%s", hex);
		e.bytes = (uint64_t)st.st_size;
		e.stored = (int64_t)st.st_mtime;
		fn(&e, arg);
		count++;
	}
	closedir(d);
	return count;
}
