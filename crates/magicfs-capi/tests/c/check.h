/* Assertions for the C tests of libmagicfs: print where and why, exit 1. */
#ifndef CHECK_H
#define CHECK_H
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            fprintf(stderr, "%s:%d: check failed: %s (errno %d: %s)\n", __FILE__, __LINE__, \
                    #cond, errno, strerror(errno));                                         \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

/* A call that must fail with -1 and errno `err`. */
#define FAILS_WITH(call, err)                                                                 \
    do {                                                                                      \
        errno = 0;                                                                            \
        long r_ = (long)(call);                                                               \
        if (r_ != -1 || errno != (err)) {                                                     \
            fprintf(stderr, "%s:%d: %s returned %ld with errno %d (%s), wanted -1 and %s\n", \
                    __FILE__, __LINE__, #call, r_, errno, strerror(errno), #err);             \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

#endif
