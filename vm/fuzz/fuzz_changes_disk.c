/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A VM's change disk, as hostile as its guest can make it, through vm_ws_diff: opened with libext2fs,
 * its "upper" directory mirrored into a scratch directory (whiteouts need root: without it they fail as
 * any unwritable entry does) and compared with a small lower directory. Nothing may crash, hang or stay
 * behind in the scratch directory.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vm_priv.h"

static char dir[64], disk[96], lower[96];

static void count(void *arg, const struct crgw_change *c)
{
	(*(size_t *)arg) += strlen(c->path);
}

/* What Initialize made goes when the fuzzer exits (its time is up): nothing stays in /tmp. */
static void cleanup(void)
{
	char path[160];

	unlink(disk);
	snprintf(path, sizeof(path), "%s/dir/f", lower);
	unlink(path);
	snprintf(path, sizeof(path), "%s/dir", lower);
	rmdir(path);
	rmdir(lower);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(dir, sizeof(dir), "/tmp/crgw-fuzz-changes.XXXXXX");
	if (!mkdtemp(dir))
		abort();
	snprintf(disk, sizeof(disk), "%s/disk.ext4", dir);
	snprintf(lower, sizeof(lower), "%s/lower", dir);
	char path[160];
	int fd;

	snprintf(path, sizeof(path), "%s/dir", lower);
	if (mkdir(lower, 0755) || mkdir(path, 0755))
		abort();
	snprintf(path, sizeof(path), "%s/dir/f", lower);
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0)
		close(fd);
	atexit(cleanup);
	return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	char err[512];
	size_t sum = 0;
	int fd = open(disk, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	close(fd);
	vm_ws_diff(disk, lower, dir, count, &sum, err, sizeof(err));
	return 0;
}
