/*
 * pyatftpd's native lane: the steady state of a lock-step read transfer, in C.
 *
 * Why: in a lock-step transfer every block costs one ACK received and one DATA sent,
 * and the server's work per block is the throughput.  The Python fast lane
 * (ReadTransfer.reply_to_ack) spends a few microseconds of interpreter time per block
 * and holds the GIL meanwhile, so concurrent transfers in one worker queue for it.
 * This loop does the same work with the GIL released (ctypes drops it for the call).
 *
 * It handles exactly what the Python fast lane handles: on a socket connected to the
 * client, the ACK of the newest block sent, while the next block is a full one no
 * further than `fast_last`.  Anything else (another datagram, a receive timeout, a
 * short read because the file shrank, a stop request, the last blocks) ends the call;
 * the datagram it did not handle stays in `buf` for the Python core, which then goes
 * on as if its own fast lane had sent the same blocks (ReadTransfer.advance_native).
 *
 * Returns the number of blocks sent.  `*out_len` is the length of the datagram left
 * in `buf`, or -errno when recv failed (EAGAIN: the SO_RCVTIMEO tick), or
 * LOCKSTEP_STOPPED / LOCKSTEP_SHORT_READ.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#define LOCKSTEP_STOPPED (-100000)
#define LOCKSTEP_SHORT_READ (-100001)
#define CHUNK_BLOCKS 64

long pyatftpd_lockstep(int sock, int fd, long blksize, long long sent, long long fast_last,
                       unsigned char *buf, long cap, long *out_len, volatile int *stop)
{
    long count = 0;
    unsigned char *chunk = malloc((size_t)blksize * CHUNK_BLOCKS);
    unsigned char *frame = malloc((size_t)blksize + 4);
    long long chunk_first = 0; /* block number of chunk's first block; 0: empty */
    long chunk_blocks = 0;

    *out_len = 0;
    if (chunk == NULL || frame == NULL) {
        free(chunk);
        free(frame);
        *out_len = -ENOMEM;
        return 0;
    }
    for (;;) {
        ssize_t n = recv(sock, buf, (size_t)cap, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            *out_len = -errno;
            break;
        }
        if (n != 4 || buf[0] != 0 || buf[1] != 4 || buf[2] != ((sent >> 8) & 0xFF) ||
            buf[3] != (sent & 0xFF) || sent >= fast_last) {
            *out_len = (long)n;
            break;
        }
        if (*stop) {
            /* the transfer is being closed: this ACK is not answered */
            *out_len = LOCKSTEP_STOPPED;
            break;
        }
        long long block = sent + 1;
        if (chunk_first == 0 || block < chunk_first || block >= chunk_first + chunk_blocks) {
            long want = CHUNK_BLOCKS;
            if (fast_last - block + 1 < want)
                want = (long)(fast_last - block + 1);
            ssize_t got = pread(fd, chunk, (size_t)(want * blksize), (off_t)((block - 1) * blksize));
            if (got < blksize) {
                *out_len = LOCKSTEP_SHORT_READ;
                break;
            }
            chunk_first = block;
            chunk_blocks = (long)(got / blksize);
        }
        frame[0] = 0;
        frame[1] = 3;
        frame[2] = (unsigned char)((block >> 8) & 0xFF);
        frame[3] = (unsigned char)(block & 0xFF);
        memcpy(frame + 4, chunk + (block - chunk_first) * blksize, (size_t)blksize);
        if (send(sock, frame, (size_t)blksize + 4, 0) < 0 && errno != ENOBUFS && errno != EAGAIN) {
            /* the client's port is gone (ECONNREFUSED) or worse: let the core time out */
            sent = block;
            count++;
            *out_len = -errno;
            break;
        }
        sent = block;
        count++;
    }
    free(chunk);
    free(frame);
    return count;
}
