/* LD_PRELOAD shim for the journal's ordering test (issue 15): watches leafmaild's system
 * calls and records, for every "250 2.0.0 OK queued as <id>" it writes to a socket, whether
 * an fdatasync of the journal file holding <id>'s record had *returned* before. Never part
 * of leafmail itself.
 *
 *   LEAFMAIL_ORDER_LOG=/path   one line per acknowledgement: "ok <id>" or "early <id>"
 *
 * A journal record is found in a pwrite by its magic "LMJRNL1\n"; the queue id follows the
 * 24-octet header (spool-format/README.md, "The journal"). Calls go to the kernel directly. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define ID_SIZE 30
#define MAX_IDS 200000

struct written {
    char id[ID_SIZE + 1];
    int fd;
    int durable;
};

static struct written table[MAX_IDS];
static long used;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void note_records(int fd, const char* buf, size_t count)
{
    static const char magic[] = "LMJRNL1\n";
    pthread_mutex_lock(&lock);
    for (size_t at = 0; at + 24 + ID_SIZE <= count; ++at) {
        if (memcmp(buf + at, magic, 8) != 0)
            continue;
        if (used < MAX_IDS) {
            memcpy(table[used].id, buf + at + 24, ID_SIZE);
            table[used].id[ID_SIZE] = '\0';
            table[used].fd = fd;
            table[used].durable = 0;
            ++used;
        }
        at += 24 + ID_SIZE - 1;
    }
    pthread_mutex_unlock(&lock);
}

static void append_log(const char* what, const char* id)
{
    const char* path = getenv("LEAFMAIL_ORDER_LOG");
    if (path == NULL)
        return;
    int out = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (out < 0)
        return;
    char line[80];
    int len = snprintf(line, sizeof line, "%s %s\n", what, id);
    if (len > 0)
        (void)!syscall(SYS_write, out, line, (size_t)len);
    close(out);
}

static void check_replies(const char* buf, size_t count)
{
    static const char reply[] = "250 2.0.0 OK queued as ";
    const size_t reply_size = sizeof reply - 1;
    for (size_t at = 0; at + reply_size + ID_SIZE <= count; ++at) {
        if (memcmp(buf + at, reply, reply_size) != 0)
            continue;
        char id[ID_SIZE + 1];
        memcpy(id, buf + at + reply_size, ID_SIZE);
        id[ID_SIZE] = '\0';
        int found = 0, durable = 0;
        pthread_mutex_lock(&lock);
        for (long i = used - 1; i >= 0; --i)
            if (strcmp(table[i].id, id) == 0) {
                found = 1;
                durable = table[i].durable;
                break;
            }
        pthread_mutex_unlock(&lock);
        append_log(!found ? "unjournaled" : durable ? "ok" : "early", id);
    }
}

ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset)
{
    note_records(fd, buf, count);
    return syscall(SYS_pwrite64, fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void* buf, size_t count, off_t offset)
{
    note_records(fd, buf, count);
    return syscall(SYS_pwrite64, fd, buf, count, offset);
}

int fdatasync(int fd)
{
    /* Only what was written before the flush started is covered by it. */
    pthread_mutex_lock(&lock);
    long covered = used;
    pthread_mutex_unlock(&lock);
    long result = syscall(SYS_fdatasync, fd);
    if (result == 0) {
        pthread_mutex_lock(&lock);
        for (long i = 0; i < covered; ++i)
            if (table[i].fd == fd)
                table[i].durable = 1;
        pthread_mutex_unlock(&lock);
    }
    return (int)result;
}

ssize_t write(int fd, const void* buf, size_t count)
{
    check_replies(buf, count);
    return syscall(SYS_write, fd, buf, count);
}

ssize_t send(int fd, const void* buf, size_t count, int flags)
{
    check_replies(buf, count);
    return syscall(SYS_sendto, fd, buf, count, flags, NULL, 0);
}

ssize_t sendto(int fd, const void* buf, size_t count, int flags, const struct sockaddr* to,
               socklen_t to_size)
{
    check_replies(buf, count);
    return syscall(SYS_sendto, fd, buf, count, flags, to, to_size);
}

ssize_t sendmsg(int fd, const struct msghdr* message, int flags)
{
    for (size_t i = 0; i < message->msg_iovlen; ++i)
        check_replies(message->msg_iov[i].iov_base, message->msg_iov[i].iov_len);
    return syscall(SYS_sendmsg, fd, message, flags);
}

ssize_t writev(int fd, const struct iovec* iov, int count)
{
    for (int i = 0; i < count; ++i)
        check_replies(iov[i].iov_base, iov[i].iov_len);
    return syscall(SYS_writev, fd, iov, count);
}
