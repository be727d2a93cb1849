/* LD_PRELOAD shim for the journal's crash test (issue 15): kills the process with SIGKILL
 * just before or just after the Nth call of one step of the commit, so that a test can
 * crash leafmaild between every pair of steps and check what comes back. Never part of
 * leafmail itself.
 *
 *   LEAFMAIL_CRASH_AT=<call>:<before|after>:<n>
 *       call: pwrite (a journal append or checkpoint), fdatasync (the group commit's flush),
 *             renameat2 (an entry appearing in queue/), syncfs (the checkpoint's flush)
 *
 * Calls go to the kernel directly (syscall), so no dlsym is needed. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static long calls;

static void maybe_crash(const char* call, const char* when)
{
    const char* spec = getenv("LEAFMAIL_CRASH_AT");
    if (spec == NULL)
        return;
    char name[32] = {0}, moment[16] = {0};
    long n = 0;
    if (sscanf(spec, "%31[^:]:%15[^:]:%ld", name, moment, &n) != 3 || strcmp(name, call) != 0)
        return;
    if (strcmp(moment, "before") == 0 && strcmp(when, "before") == 0) {
        if (__atomic_add_fetch(&calls, 1, __ATOMIC_SEQ_CST) == n)
            kill(getpid(), SIGKILL);
    } else if (strcmp(moment, "after") == 0 && strcmp(when, "after") == 0) {
        if (__atomic_add_fetch(&calls, 1, __ATOMIC_SEQ_CST) == n)
            kill(getpid(), SIGKILL);
    }
}

#define AROUND(call, expression)                                                                   \
    do {                                                                                           \
        maybe_crash(call, "before");                                                               \
        long result_ = (expression);                                                               \
        maybe_crash(call, "after");                                                                \
        return result_;                                                                            \
    } while (0)

ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset)
{
    AROUND("pwrite", syscall(SYS_pwrite64, fd, buf, count, offset));
}

ssize_t pwrite64(int fd, const void* buf, size_t count, off_t offset)
{
    AROUND("pwrite", syscall(SYS_pwrite64, fd, buf, count, offset));
}

int fdatasync(int fd)
{
    AROUND("fdatasync", syscall(SYS_fdatasync, fd));
}

int syncfs(int fd)
{
    AROUND("syncfs", syscall(SYS_syncfs, fd));
}

int renameat2(int olddirfd, const char* oldpath, int newdirfd, const char* newpath,
              unsigned int flags)
{
    AROUND("renameat2", syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags));
}
