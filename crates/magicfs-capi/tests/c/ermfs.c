/* The ERMFS export tests, against libmagicfs: export and read, a compressed
 * file, mmap, fstat, lseek, error conditions, repeated exports and snapshot
 * semantics; then a compressed file round trip through a store on disk. */
#define _GNU_SOURCE
#include "magicfs.h"
#include "check.h"
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static magicfs_store *s;

static int create(const char *path) {
    int fd = magicfs_open(s, path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    return fd;
}

static void put(int fd, const char *msg) {
    CHECK(magicfs_write(fd, msg, strlen(msg)) == (ssize_t)strlen(msg));
}

static void basic_export(void) {
    const char *msg = "Basic export test data";
    int fd = create("/phase2/basic.txt");
    put(fd, msg);
    int memfd = magicfs_export_memfd(s, "/phase2/basic.txt", 0); /* before closing */
    CHECK(memfd >= 0);
    char buf[64];
    ssize_t r = read(memfd, buf, sizeof buf - 1);
    CHECK(r == (ssize_t)strlen(msg));
    buf[r] = 0;
    CHECK(strcmp(buf, msg) == 0);
    CHECK(magicfs_close(fd) == 0);
    CHECK(close(memfd) == 0);
}

static void compressed_export(void) {
    const char *pattern = "Compressible repetitive data pattern. ";
    size_t len = strlen(pattern);
    int fd = create("/phase2/compressed.txt");
    for (int i = 0; i < 50; i++) put(fd, pattern);
    CHECK(magicfs_close(fd) == 0); /* committed: chunked and compressed */
    int memfd = magicfs_export_memfd(s, "phase2/compressed.txt", 0);
    CHECK(memfd >= 0);
    struct stat st;
    CHECK(fstat(memfd, &st) == 0);
    CHECK(st.st_size == (off_t)(len * 50));
    char *all = malloc(len * 50);
    CHECK(all != NULL);
    CHECK(read(memfd, all, len * 50) == (ssize_t)(len * 50));
    for (int i = 0; i < 50; i++) CHECK(memcmp(all + i * len, pattern, len) == 0);
    free(all);
    close(memfd);
}

static void mmap_export(void) {
    const char *msg = "mmap test data for memfd compatibility";
    int fd = create("/phase2/mmap.txt");
    put(fd, msg);
    CHECK(magicfs_close(fd) == 0);
    int memfd = magicfs_export_memfd(s, "/phase2/mmap.txt", 0);
    CHECK(memfd >= 0);
    void *map = mmap(NULL, strlen(msg), PROT_READ, MAP_PRIVATE, memfd, 0);
    CHECK(map != MAP_FAILED);
    CHECK(memcmp(map, msg, strlen(msg)) == 0);
    /* Sealed: no shared writable mapping, no write, no resize. */
    CHECK(mmap(NULL, strlen(msg), PROT_WRITE, MAP_SHARED, memfd, 0) == MAP_FAILED);
    FAILS_WITH(write(memfd, "x", 1), EPERM);
    FAILS_WITH(ftruncate(memfd, 1), EPERM);
    munmap(map, strlen(msg));
    close(memfd);
}

static void fstat_export(void) {
    const char *msg = "fstat test data";
    int fd = create("/phase2/fstat.txt");
    put(fd, msg);
    CHECK(magicfs_close(fd) == 0);
    int memfd = magicfs_export_memfd(s, "/phase2/fstat.txt", 0);
    CHECK(memfd >= 0);
    struct stat st;
    CHECK(fstat(memfd, &st) == 0);
    CHECK(st.st_size == (off_t)strlen(msg));
    CHECK(S_ISREG(st.st_mode));
    CHECK(fcntl(memfd, F_GETFD) == FD_CLOEXEC);
    close(memfd);
    memfd = magicfs_export_memfd(s, "/phase2/fstat.txt", MAGICFS_EXPORT_KEEP_ON_EXEC);
    CHECK(memfd >= 0 && fcntl(memfd, F_GETFD) == 0);
    close(memfd);
}

static void lseek_export(void) {
    const char *msg = "0123456789ABCDEF";
    int fd = create("/phase2/seek.txt");
    put(fd, msg);
    CHECK(magicfs_close(fd) == 0);
    int memfd = magicfs_export_memfd(s, "/phase2/seek.txt", 0);
    CHECK(memfd >= 0);
    char buf[5] = {0};
    CHECK(lseek(memfd, 5, SEEK_SET) == 5);
    CHECK(read(memfd, buf, 4) == 4);
    CHECK(strcmp(buf, "5678") == 0);
    CHECK(lseek(memfd, -2, SEEK_END) == (off_t)strlen(msg) - 2);
    memset(buf, 0, sizeof buf);
    CHECK(read(memfd, buf, 2) == 2);
    CHECK(strcmp(buf, "EF") == 0);
    close(memfd);
}

static void error_conditions(void) {
    FAILS_WITH(magicfs_export_memfd(s, "/nonexistent/path", 0), ENOENT);
    FAILS_WITH(magicfs_export_memfd(s, NULL, 0), EINVAL);
    FAILS_WITH(magicfs_export_memfd(NULL, "/phase2/seek.txt", 0), EINVAL);
    FAILS_WITH(magicfs_export_memfd(s, "/phase2", 0), EISDIR);
    FAILS_WITH(magicfs_export_memfd(s, "/phase2/seek.txt", 0x100), EINVAL);
    FAILS_WITH(magicfs_open(s, "/phase2/missing", O_RDONLY, 0), ENOENT);
    FAILS_WITH(magicfs_open(s, "/nodir/file", O_RDWR | O_CREAT, 0644), ENOENT);
    FAILS_WITH(magicfs_open(s, "/phase2/seek.txt", O_RDWR | O_CREAT | O_EXCL, 0644), EEXIST);
    FAILS_WITH(magicfs_open(s, "/phase2", O_WRONLY, 0), EISDIR);
    FAILS_WITH(magicfs_open(s, "/phase2/seek.txt/x", O_RDONLY, 0), ENOTDIR);
    FAILS_WITH(magicfs_open(s, NULL, O_RDONLY, 0), EINVAL);
    FAILS_WITH(magicfs_mkdir(s, "/phase2", 0755), EEXIST);
    FAILS_WITH(magicfs_rmdir(s, "/phase2"), ENOTEMPTY);
    FAILS_WITH(magicfs_unlink(s, "/phase2"), EISDIR);
    FAILS_WITH(magicfs_unlink(s, "/phase2/missing"), ENOENT);
    FAILS_WITH(magicfs_rename(s, "/phase2/missing", "/x"), ENOENT);
    char buf[4];
    FAILS_WITH(magicfs_read(12345, buf, sizeof buf), EBADF);
    FAILS_WITH(magicfs_close(-1), EBADF);
    int ro = magicfs_open(s, "/phase2/seek.txt", O_RDONLY, 0);
    CHECK(ro >= 0);
    FAILS_WITH(magicfs_write(ro, "x", 1), EBADF);
    FAILS_WITH(magicfs_ftruncate(ro, 0), EINVAL);
    FAILS_WITH(magicfs_lseek(ro, -1, SEEK_SET), EINVAL);
    FAILS_WITH(magicfs_lseek(ro, 0, 42), EINVAL);
    FAILS_WITH(magicfs_read(ro, NULL, 4), EFAULT);
    CHECK(magicfs_close(ro) == 0);
    FAILS_WITH(magicfs_close(ro), EBADF);
    FAILS_WITH(magicfs_store_close(NULL), EINVAL);
}

static void multiple_exports(void) {
    const char *msg = "Multiple export test";
    int fd = create("/phase2/multi.txt");
    put(fd, msg);
    CHECK(magicfs_close(fd) == 0);
    int a = magicfs_export_memfd(s, "/phase2/multi.txt", 0);
    int b = magicfs_export_memfd(s, "/phase2/multi.txt", 0);
    CHECK(a >= 0 && b >= 0 && a != b);
    char x[64] = {0}, y[64] = {0};
    CHECK(read(a, x, sizeof x - 1) == (ssize_t)strlen(msg));
    CHECK(read(b, y, sizeof y - 1) == (ssize_t)strlen(msg));
    CHECK(strcmp(x, y) == 0 && strcmp(x, msg) == 0);
    close(a);
    close(b);
}

static void snapshot_semantics(void) {
    const char *first = "Initial data", *more = " + Additional data";
    int fd = create("/phase2/snapshot.txt");
    put(fd, first);
    int memfd = magicfs_export_memfd(s, "/phase2/snapshot.txt", 0);
    CHECK(memfd >= 0);
    put(fd, more);
    char buf[64] = {0};
    CHECK(read(memfd, buf, sizeof buf - 1) == (ssize_t)strlen(first));
    CHECK(strcmp(buf, first) == 0);
    CHECK(magicfs_close(fd) == 0);
    close(memfd);
}

/* Bytes under `dir/packs`: what the store holds on disk for file contents. */
static long long pack_bytes(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/packs", dir);
    DIR *d = opendir(path);
    CHECK(d != NULL);
    long long total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char f[8192];
        snprintf(f, sizeof f, "%s/%s", path, e->d_name);
        struct stat st;
        CHECK(stat(f, &st) == 0);
        total += st.st_size;
    }
    closedir(d);
    return total;
}

static void compressed_round_trip(const char *dir) {
    enum { SIZE = 4 << 20 };
    char *data = malloc(SIZE), *back = malloc(SIZE);
    CHECK(data && back);
    for (int i = 0; i < SIZE; i++) data[i] = "MagicFS compresses text like this.\n"[i % 35];
    magicfs_store *disk = magicfs_store_open(dir, MAGICFS_STORE_CREATE);
    CHECK(disk != NULL);
    CHECK(magicfs_mkdir(disk, "docs", 0755) == 0);
    int fd = magicfs_open(disk, "docs/big.txt", O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0);
    for (int off = 0; off < SIZE; off += 65536) CHECK(magicfs_write(fd, data + off, 65536) == 65536);
    CHECK(magicfs_close(fd) == 0);
    CHECK(magicfs_rename(disk, "docs/big.txt", "docs/moved.txt") == 0);
    CHECK(magicfs_store_close(disk) == 0);
    /* Held compressed on disk, far below its size. */
    long long packed = pack_bytes(dir);
    CHECK(packed > 0 && packed < SIZE / 20);
    /* Another process holding the store is refused; this one reopens it. */
    disk = magicfs_store_open(dir, 0);
    CHECK(disk != NULL);
    FAILS_WITH(magicfs_store_open(dir, 0) == NULL ? -1 : 0, EBUSY);
    fd = magicfs_open(disk, "/docs/moved.txt", O_RDONLY, 0);
    CHECK(fd >= 0);
    struct stat st;
    CHECK(magicfs_fstat(fd, &st) == 0 && st.st_size == SIZE && S_ISREG(st.st_mode));
    ssize_t got = 0, n;
    while ((n = magicfs_read(fd, back + got, SIZE - got)) > 0) got += n;
    CHECK(n == 0 && got == SIZE);
    CHECK(memcmp(data, back, SIZE) == 0);
    CHECK(magicfs_pread(fd, back, 10, SIZE - 4) == 4);
    CHECK(memcmp(back, data + SIZE - 4, 4) == 0);
    CHECK(magicfs_close(fd) == 0);
    int memfd = magicfs_export_memfd(disk, "docs/moved.txt", 0);
    CHECK(memfd >= 0);
    char *map = mmap(NULL, SIZE, PROT_READ, MAP_PRIVATE, memfd, 0);
    CHECK(map != MAP_FAILED && memcmp(map, data, SIZE) == 0);
    munmap(map, SIZE);
    close(memfd);
    CHECK(magicfs_store_close(disk) == 0);
    FAILS_WITH(magicfs_store_open("/nonexistent/magicfs-store", 0) == NULL ? -1 : 0, ENOENT);
    free(data);
    free(back);
}

int main(int argc, char **argv) {
    CHECK(argc == 2); /* a scratch directory for the store on disk */
    s = magicfs_store_open(NULL, 0);
    CHECK(s != NULL);
    CHECK(magicfs_mkdir(s, "/phase2", 0755) == 0);
    basic_export();
    compressed_export();
    mmap_export();
    fstat_export();
    lseek_export();
    error_conditions();
    multiple_exports();
    snapshot_semantics();
    CHECK(magicfs_store_close(s) == 0);
    compressed_round_trip(argv[1]);
    printf("ermfs: all passed\n");
    return 0;
}
