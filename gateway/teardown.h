/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Deferred removal of what a released sandbox leaves behind: its control group, whose processes take a
 * moment to die, and its data directory (workspace changes, home), which may hold a large tree written by
 * the sandbox, or be the mount of its disk. One thread does both, so the control loop never waits on either.
 */
#ifndef CRGW_GATEWAY_TEARDOWN_H
#define CRGW_GATEWAY_TEARDOWN_H

#include <stdbool.h>
#include <stdint.h>

struct crgw_cgroup;

/* Starts the teardown thread. Returns 0 or -errno. */
int crgw_teardown_start(void);

/*
 * Queues the removal of `cg` (taken; may be NULL) and of the directory tree at `dir` (copied; may be NULL).
 * `image` (copied; may be NULL) is the image of a disk mounted on `dir` (disk.h): the disk is detached and
 * its image removed before the tree. Never blocks. Without a running thread (or out of memory) the work
 * is done at once.
 */
void crgw_teardown_submit(struct crgw_cgroup *cg, const char *dir, const char *image);

/*
 * The ticket of the latest job queued so far, and whether the jobs up to a ticket have all finished: a
 * caller that has just submitted work takes a ticket and polls for it (jobs run one at a time, in order).
 * Work done at once (no thread) needs no ticket; 0 is always done.
 */
uint64_t crgw_teardown_ticket(void);
bool crgw_teardown_done(uint64_t ticket);

/* Finishes the queued work and stops the thread. */
void crgw_teardown_stop(void);

/*
 * Removes the tree at `path` without following a symbolic link anywhere inside it, however deep it is
 * nested (deep branches are moved up rather than recursed into). Returns 0 or the first -errno met; a
 * missing path is 0.
 */
int crgw_tree_remove(const char *path);

#endif
