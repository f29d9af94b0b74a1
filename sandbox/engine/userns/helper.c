// The namespace helper: the binary re-executed with _LABD_USERNS_HELPER
// set does its namespace work here, in a constructor that runs before the
// Go runtime has started a second thread. setns(2) into a user namespace
// refuses multithreaded callers, which is why this cannot be Go code.
//
// Protocol (helper.go is the other side): fd 0 is a pipe the parent holds
// open, fd 1 a pipe to the parent, fd 3 (mode "netns") the user namespace
// to join. The helper writes "ok\n" once its namespaces are in place, or
// "error: ...\n" and exits 1; after "ok" it waits for EOF on fd 0 (the
// parent has pinned what it needed) and exits 0. It never returns to Go.

#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

static void labd_helper_say(const char *msg)
{
	size_t n = strlen(msg);
	while (n > 0) {
		ssize_t w = write(1, msg, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		msg += w;
		n -= (size_t)w;
	}
}

static void labd_helper_fail(const char *what)
{
	char buf[256];
	snprintf(buf, sizeof buf, "error: %s: %s\n", what, strerror(errno));
	labd_helper_say(buf);
	_exit(1);
}

__attribute__((constructor)) static void labd_userns_helper(void)
{
	const char *mode = getenv("_LABD_USERNS_HELPER");
	char buf[64];

	if (mode == NULL)
		return;
	// Nothing in a container may read this process's memory or open its
	// files through /proc, whatever namespace it joins.
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		labd_helper_fail("prctl(PR_SET_DUMPABLE)");
	if (strcmp(mode, "netns") == 0) {
		if (setns(3, CLONE_NEWUSER) < 0)
			labd_helper_fail("join user namespace");
		if (unshare(CLONE_NEWNET) < 0)
			labd_helper_fail("new network namespace");
	} else if (strcmp(mode, "hold") != 0) {
		errno = EINVAL;
		labd_helper_fail("unknown helper mode");
	}
	labd_helper_say("ok\n");
	for (;;) {
		ssize_t n = read(0, buf, sizeof buf);
		if (n == 0 || (n < 0 && errno != EINTR))
			break;
	}
	_exit(0);
}
