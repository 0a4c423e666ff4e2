/* Many threads opening, writing, reading and closing at once while another
 * churns descriptor numbers: every thread gets its own descriptors and
 * offsets, every byte lands once (appends to one shared file included),
 * and closing the store closes what is left. */
#define _GNU_SOURCE
#include "magicfs.h"
#include "check.h"
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

enum { THREADS = 8, ROUNDS = 400 };

static magicfs_store *s;
static atomic_int closed;

static void *worker(void *arg) {
    long id = (long)arg;
    char path[64], line[64], back[64];
    snprintf(path, sizeof path, "stress/t%ld", id);
    for (int i = 0; i < ROUNDS; i++) {
        int fd = magicfs_open(s, path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        CHECK(fd >= 0);
        int n = snprintf(line, sizeof line, "%ld:%05d\n", id, i);
        CHECK(magicfs_write(fd, line, n) == n);
        CHECK(magicfs_close(fd) == 0);
        /* Everyone appends to one shared file too. */
        fd = magicfs_open(s, "stress/shared", O_WRONLY | O_CREAT | O_APPEND, 0644);
        CHECK(fd >= 0 && magicfs_write(fd, line, n) == n && magicfs_close(fd) == 0);
        fd = magicfs_open(s, path, O_RDONLY, 0);
        CHECK(fd >= 0);
        CHECK(magicfs_pread(fd, back, n, (off_t)i * n) == n && memcmp(back, line, n) == 0);
        CHECK(magicfs_close(fd) == 0);
        atomic_fetch_add(&closed, 1);
    }
    return NULL;
}

static void *racer(void *arg) {
    (void)arg;
    for (int i = 0; i < ROUNDS * 4; i++) {
        int fd = magicfs_open(s, "stress/racer", O_RDWR | O_CREAT, 0644);
        CHECK(fd >= 0);
        CHECK(magicfs_close(fd) == 0);
    }
    return NULL;
}

int main(void) {
    s = magicfs_store_open(NULL, 0);
    CHECK(s != NULL && magicfs_mkdir(s, "stress", 0755) == 0);
    pthread_t t[THREADS + 1];
    for (long i = 0; i < THREADS; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
    CHECK(pthread_create(&t[THREADS], NULL, racer, NULL) == 0);
    for (int i = 0; i <= THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(closed == THREADS * ROUNDS);
    struct stat st;
    for (long i = 0; i < THREADS; i++) {
        char path[64];
        snprintf(path, sizeof path, "stress/t%ld", i);
        CHECK(magicfs_stat(s, path, &st) == 0 && st.st_size == ROUNDS * 8);
    }
    CHECK(magicfs_stat(s, "stress/shared", &st) == 0 && st.st_size == THREADS * ROUNDS * 8);
    /* Every line of the shared file is whole and each appears once. */
    int fd = magicfs_open(s, "stress/shared", O_RDONLY, 0);
    CHECK(fd >= 0);
    static char all[THREADS * ROUNDS * 8];
    CHECK(magicfs_read(fd, all, sizeof all) == (ssize_t)sizeof all);
    static unsigned char seen[THREADS][ROUNDS];
    for (int i = 0; i < THREADS * ROUNDS; i++) {
        long id;
        int round;
        CHECK(sscanf(all + i * 8, "%ld:%05d", &id, &round) == 2 && all[i * 8 + 7] == '\n');
        CHECK(id >= 0 && id < THREADS && round >= 0 && round < ROUNDS && !seen[id][round]);
        seen[id][round] = 1;
    }
    CHECK(magicfs_close(fd) == 0);
    /* Closing the store closes what is still open. */
    CHECK(magicfs_open(s, "stress/left-open", O_WRONLY | O_CREAT, 0644) >= 0);
    CHECK(magicfs_store_close(s) == 0);
    printf("threads: all passed\n");
    return 0;
}
