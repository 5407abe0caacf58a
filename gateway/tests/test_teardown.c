/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Removing a released sandbox's data tree, which the sandbox wrote: nested far deeper than a recursion
 * or PATH_MAX allows, with links to a directory outside (never followed: what they point to stays), a
 * FIFO, a socket, read-only directories and files; and through the teardown thread, queued work done
 * before stop returns.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "tap.h"
#include "teardown.h"

/* A chain of `depth` directories below `dir`, made with relative steps (the full path is far too long). */
static int deep_chain(const char *dir, unsigned depth)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);

	for (unsigned i = 0; fd >= 0 && i < depth; i++) {
		int next;

		if (mkdirat(fd, "dddddddddddddddddddddddddddddddddddddddd", 0755) && errno != EEXIST)
			break;
		next = openat(fd, "dddddddddddddddddddddddddddddddddddddddd", O_RDONLY | O_DIRECTORY);
		if (i % 97 == 0) {
			int f = openat(next, "file", O_WRONLY | O_CREAT, 0644);

			if (f >= 0)
				close(f);
		}
		close(fd);
		fd = next;
	}
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

int main(void)
{
	char top[] = "/tmp/crgw-test-teardown-XXXXXX", tree[128], outside[128], path[256];
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int s, fd;

	if (!mkdtemp(top))
		return 1;
	snprintf(tree, sizeof(tree), "%s/tree", top);
	snprintf(outside, sizeof(outside), "%s/outside", top);
	mkdir(tree, 0755);
	mkdir(outside, 0755);
	snprintf(path, sizeof(path), "%s/keep", outside);
	fd = open(path, O_WRONLY | O_CREAT, 0644);
	close(fd);

	/* 1,000 levels of 41 bytes each: about 41 KiB of path. */
	tap_result(deep_chain(tree, 1000) == 0, "a tree 1,000 directories deep is made");
	snprintf(path, sizeof(path), "%s/link-to-outside", tree);
	tap_result(symlink(outside, path) == 0, "a link to a directory outside");
	snprintf(path, sizeof(path), "%s/link-to-root", tree);
	symlink("/", path);
	snprintf(path, sizeof(path), "%s/fifo", tree);
	mkfifo(path, 0600);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%.90s/sock", tree);
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	bind(s, (struct sockaddr *)&sun, sizeof(sun));
	close(s);
	/* A read-only directory with a file in it: root removes it all the same. */
	snprintf(path, sizeof(path), "%s/ro", tree);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/ro/f", tree);
	fd = open(path, O_WRONLY | O_CREAT, 0444);
	close(fd);
	snprintf(path, sizeof(path), "%s/ro", tree);
	chmod(path, 0555);

	int e = crgw_tree_remove(tree);

	tap_result(e == 0, "the tree is removed (%s)", e ? strerror(-e) : "ok");
	tap_result(access(tree, F_OK) != 0, "nothing of it is left");
	snprintf(path, sizeof(path), "%s/keep", outside);
	tap_result(access(path, F_OK) == 0, "what a link inside pointed to is untouched");
	tap_result(access("/etc/passwd", F_OK) == 0, "so is what the link to / pointed to");
	tap_result(crgw_tree_remove(tree) == 0, "removing a missing tree is not an error");
	snprintf(path, sizeof(path), "%s/plain-link", top);
	symlink(outside, path);
	tap_result(crgw_tree_remove(path) == 0 && access(outside, F_OK) == 0,
		   "a link given as the tree is removed itself, not what it points to");

	/* Through the thread: queued before stop, done by the time stop returns. */
	tap_result(crgw_teardown_start() == 0, "the teardown thread starts");
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/queued%d", top, i);
		mkdir(path, 0755);
		deep_chain(path, 100);
		crgw_teardown_submit(NULL, path, NULL);
	}
	crgw_teardown_stop();
	bool gone = true;

	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/queued%d", top, i);
		gone &= access(path, F_OK) != 0;
	}
	tap_result(gone, "queued trees are gone when stop returns");

	/* Tickets: a caller waiting for its release polls until its job, and all before it, are done. */
	tap_result(crgw_teardown_start() == 0, "the teardown thread starts again");
	uint64_t before = crgw_teardown_ticket(), first, last;

	snprintf(path, sizeof(path), "%s/ticket-big", top);
	mkdir(path, 0755);
	deep_chain(path, 3000);
	crgw_teardown_submit(NULL, path, NULL);
	first = crgw_teardown_ticket();
	snprintf(path, sizeof(path), "%s/ticket-small", top);
	mkdir(path, 0755);
	crgw_teardown_submit(NULL, path, NULL);
	last = crgw_teardown_ticket();
	tap_result(crgw_teardown_done(0) && crgw_teardown_done(before),
		   "ticket 0 and the tickets of finished work are done");
	tap_result(first == before + 1 && last == first + 1, "each queued job takes the next ticket (%llu, %llu, %llu)",
		   (unsigned long long)before, (unsigned long long)first, (unsigned long long)last);
	bool in_order = true;
	int polls = 0;

	/* Bounded: 3,000 levels take a few hundred milliseconds at most. */
	while (!crgw_teardown_done(last) && polls++ < 20000) {
		snprintf(path, sizeof(path), "%s/ticket-small", top);
		/* Jobs finish in order: the small one gone means the big one's ticket is done. */
		if (access(path, F_OK) != 0 && !crgw_teardown_done(first))
			in_order = false;
		usleep(500);
	}
	snprintf(path, sizeof(path), "%s/ticket-big", top);
	tap_result(crgw_teardown_done(last) && access(path, F_OK) != 0,
		   "the latest ticket is done once its work is (%d polls)", polls);
	snprintf(path, sizeof(path), "%s/ticket-small", top);
	tap_result(in_order && access(path, F_OK) != 0, "a later job never finishes before an earlier one");
	tap_result(!crgw_teardown_done(last + 1), "a ticket not yet given is not done");
	crgw_teardown_stop();
	snprintf(path, sizeof(path), "%s/after", top);
	mkdir(path, 0755);
	crgw_teardown_submit(NULL, path, NULL);
	tap_result(access(path, F_OK) != 0, "with the thread stopped, a submit does the work at once");

	snprintf(path, sizeof(path), "%s/keep", outside);
	unlink(path);
	rmdir(outside);
	rmdir(top);
	return tap_done();
}
