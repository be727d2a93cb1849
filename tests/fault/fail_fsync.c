/* LD_PRELOAD shim for the fsync-failure tests (issue 6): makes fsync() and fdatasync() fail
 * with EIO while a trigger file exists, so that a test can switch the fault on and off in a
 * running leafmaild. Never part of leafmail itself.
 *
 *   LEAFMAIL_FAIL_FSYNC_TRIGGER=/path  while this file exists, the calls it names fail:
 *                                      "fsync", "fdatasync", or empty/"all" for both
 *   LEAFMAIL_FAIL_FSYNC_COUNT=/path    optional: one line appended per failed call
 *
 * Calls that are not failed go to the kernel directly (syscall), so no dlsym is needed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int should_fail(const char* call)
{
    const char* trigger = getenv("LEAFMAIL_FAIL_FSYNC_TRIGGER");
    if (trigger == NULL || trigger[0] == '\0')
        return 0;
    int fd = open(trigger, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0; /* no trigger file: no fault */
    char what[64] = {0};
    ssize_t n = read(fd, what, sizeof what - 1);
    close(fd);
    if (n < 0)
        n = 0;
    what[n] = '\0';
    what[strcspn(what, "\r\n \t")] = '\0';
    if (what[0] == '\0' || strcmp(what, "all") == 0 || strcmp(what, call) == 0) {
        const char* count = getenv("LEAFMAIL_FAIL_FSYNC_COUNT");
        if (count != NULL && count[0] != '\0') {
            int out = open(count, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
            if (out >= 0) {
                char line[80];
                int len = snprintf(line, sizeof line, "%s\n", call);
                if (len > 0)
                    (void)!write(out, line, (size_t)len);
                close(out);
            }
        }
        return 1;
    }
    return 0;
}

int fsync(int fd)
{
    if (should_fail("fsync")) {
        errno = EIO;
        return -1;
    }
    return (int)syscall(SYS_fsync, fd);
}

int fdatasync(int fd)
{
    if (should_fail("fdatasync")) {
        errno = EIO;
        return -1;
    }
    return (int)syscall(SYS_fdatasync, fd);
}
