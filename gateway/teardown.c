/* SPDX-License-Identifier: Apache-2.0 */
/* The teardown thread and a removal of untrusted directory trees that never follows a link. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup.h"
#include "disk.h"
#include "log.h"
#include "teardown.h"

struct job {
	struct job *next;
	struct crgw_cgroup *cg;
	char *dir;
	char *image; /* a disk mounted on dir, or NULL */
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_t thread;
	bool running, stopping;
	struct job *head, **tail;
	uint64_t queued;	   /* jobs ever queued: the latest one's ticket */
	_Atomic uint64_t finished; /* jobs ever finished; in order, since one thread runs them first come first */
} T = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

/*
 * Past this depth a directory is moved up to the top of the tree being removed instead of being entered:
 * a sandbox can nest directories far deeper than a stack or PATH_MAX allows.
 */
#define TREE_DEPTH_MAX 64

static _Atomic unsigned long moved_seq;

/* Empties the directory `fd` (taken); `top` is the tree's top, where deep branches are moved. */
static int empty_dir(int fd, int top, unsigned depth)
{
	DIR *d = fdopendir(fd);
	struct dirent *e;
	int err = 0;

	if (!d) {
		err = -errno;
		close(fd);
		return err;
	}
	for (;;) {
		bool again = false;

		rewinddir(d);
		while ((e = readdir(d))) {
			int sub, e2;

			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			if (unlinkat(dirfd(d), e->d_name, 0) == 0 || errno == ENOENT)
				continue;
			if (errno != EISDIR && errno != EPERM) {
				if (!err)
					err = -errno;
				continue;
			}
			if (depth >= TREE_DEPTH_MAX) {
				char name[48];
				bool moved = false;

				for (int try = 0; try < 8 && !moved; try++) {
					snprintf(name, sizeof(name), ".crgw-deep-%lu", ++moved_seq);
					moved = renameat2(dirfd(d), e->d_name, top, name, RENAME_NOREPLACE) == 0;
				}
				if (moved)
					continue;
				if (!err)
					err = -errno;
				/* Never deeper than the limit: left for the caller to report. */
				continue;
			}
			/* O_NOFOLLOW | O_DIRECTORY: a link swapped in for the directory is never entered. */
			sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub < 0) {
				if (!err && errno != ENOENT)
					err = -errno;
				continue;
			}
			e2 = empty_dir(sub, top, depth + 1);
			if (e2 && !err)
				err = e2;
			if (unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR) && errno != ENOENT && !err)
				err = -errno;
			again = true;
		}
		/* Entries moved up into this very directory (the top) are seen on another pass. */
		if (!again || depth > 0)
			break;
	}
	closedir(d);
	return err;
}

int crgw_tree_remove(const char *path)
{
	int fd, top, err;
	struct stat st;

	if (lstat(path, &st)) {
		return errno == ENOENT ? 0 : -errno;
	}
	if (!S_ISDIR(st.st_mode))
		return unlink(path) ? -errno : 0;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	top = dup(fd);
	if (top < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	err = empty_dir(fd, top, 0);
	close(top);
	if (rmdir(path) && errno != ENOENT && !err)
		err = -errno;
	return err;
}

/* ---- the thread --------------------------------------------------------------------------------- */

static void run_job(struct job *j)
{
	if (j->cg && crgw_cgroup_destroy(j->cg, 10000))
		log_warn("a released sandbox's group still holds processes; the next start removes it", "%s", "");
	/*
	 * The processes are gone (or given up on): the disk leaves the host's tree, and its space comes back
	 * once nothing holds it, the image being unlinked. Other sandboxes' mount namespaces hold copies of
	 * it (each copied the host's tree while it was mounted); removing the directory below detaches those
	 * too, as the kernel does for a mount point removed in another namespace.
	 */
	if (j->image) {
		int err = crgw_disk_detach(j->dir);

		if (err)
			log_warn("cannot detach a released sandbox's disk", "path=\"%s\" error=\"%s\"", j->dir,
				 strerror(-err));
		if (unlink(j->image) && errno != ENOENT)
			log_warn("cannot remove a released sandbox's disk image", "path=\"%s\" error=\"%s\"", j->image,
				 strerror(errno));
	}
	if (j->dir) {
		int err = crgw_tree_remove(j->dir);

		if (err)
			log_warn("cannot remove a released sandbox's data", "path=\"%s\" error=\"%s\"", j->dir,
				 strerror(-err));
	}
	free(j->dir);
	free(j->image);
	free(j);
}

static void *teardown_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&T.lock);
	for (;;) {
		struct job *j = T.head;

		if (!j) {
			if (T.stopping)
				break;
			pthread_cond_wait(&T.wake, &T.lock);
			continue;
		}
		T.head = j->next;
		if (!T.head)
			T.tail = &T.head;
		pthread_mutex_unlock(&T.lock);
		run_job(j);
		atomic_fetch_add(&T.finished, 1);
		pthread_mutex_lock(&T.lock);
	}
	pthread_mutex_unlock(&T.lock);
	return NULL;
}

int crgw_teardown_start(void)
{
	int err;

	T.head = NULL;
	T.tail = &T.head;
	T.stopping = false;
	err = pthread_create(&T.thread, NULL, teardown_main, NULL);
	if (err)
		return -err;
	T.running = true;
	return 0;
}

void crgw_teardown_submit(struct crgw_cgroup *cg, const char *dir, const char *image)
{
	struct job *j = calloc(1, sizeof(*j));

	if (j && ((dir && !(j->dir = strdup(dir))) || (dir && image && !(j->image = strdup(image))))) {
		free(j->dir);
		free(j);
		j = NULL;
	}
	if (!j) {
		/* Out of memory: do it here rather than leave it. */
		crgw_cgroup_destroy(cg, 2000);
		if (dir && image) {
			crgw_disk_detach(dir);
			unlink(image);
		}
		if (dir)
			crgw_tree_remove(dir);
		return;
	}
	j->cg = cg;
	pthread_mutex_lock(&T.lock);
	if (!T.running) {
		pthread_mutex_unlock(&T.lock);
		run_job(j);
		return;
	}
	*T.tail = j;
	T.tail = &j->next;
	T.queued++;
	pthread_cond_signal(&T.wake);
	pthread_mutex_unlock(&T.lock);
}

uint64_t crgw_teardown_ticket(void)
{
	uint64_t t;

	pthread_mutex_lock(&T.lock);
	t = T.queued;
	pthread_mutex_unlock(&T.lock);
	return t;
}

bool crgw_teardown_done(uint64_t ticket)
{
	return atomic_load(&T.finished) >= ticket;
}

void crgw_teardown_stop(void)
{
	if (!T.running)
		return;
	pthread_mutex_lock(&T.lock);
	T.stopping = true;
	pthread_cond_signal(&T.wake);
	pthread_mutex_unlock(&T.lock);
	pthread_join(T.thread, NULL);
	T.running = false;
}
