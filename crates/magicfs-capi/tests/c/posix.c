/* POSIX conventions of libmagicfs: offsets shared by one descriptor and
 * independent between two, pread/pwrite, O_APPEND, O_TRUNC, holes, fstat,
 * rename over a file, unlink of an open file, symbolic links followed. */
#define _GNU_SOURCE
#include "magicfs.h"
#include "check.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

int main(void) {
    magicfs_store *s = magicfs_store_open(NULL, 0);
    CHECK(s != NULL);
    CHECK(strlen(magicfs_version()) > 0);
    CHECK(magicfs_mkdir(s, "dir", 0750) == 0);
    struct stat st;
    CHECK(magicfs_stat(s, "/dir", &st) == 0 && S_ISDIR(st.st_mode));
    CHECK((st.st_mode & 0777 & ~0750) == 0); /* the umask may take bits away, never add */

    int w = magicfs_open(s, "dir/a", O_WRONLY | O_CREAT | O_EXCL, 0600);
    int r = magicfs_open(s, "dir/a", O_RDONLY, 0);
    CHECK(w >= 0 && r >= 0 && w != r);
    CHECK(magicfs_write(w, "hello ", 6) == 6);
    CHECK(magicfs_write(w, "world", 5) == 5);
    CHECK(magicfs_lseek(w, 0, SEEK_CUR) == 11);
    char buf[64] = {0};
    CHECK(magicfs_read(r, buf, 5) == 5 && memcmp(buf, "hello", 5) == 0); /* its own offset */
    CHECK(magicfs_read(r, buf, 64) == 6 && memcmp(buf, " world", 6) == 0);
    CHECK(magicfs_read(r, buf, 64) == 0);
    CHECK(magicfs_pwrite(w, "W", 1, 6) == 1);
    CHECK(magicfs_lseek(w, 0, SEEK_CUR) == 11); /* pwrite leaves the offset */
    CHECK(magicfs_pread(r, buf, 5, 6) == 5 && memcmp(buf, "World", 5) == 0);
    CHECK(magicfs_lseek(r, 0, SEEK_CUR) == 11);
    /* A write past the end leaves a hole that reads as zeros. */
    CHECK(magicfs_lseek(w, 100, SEEK_SET) == 100);
    CHECK(magicfs_write(w, "!", 1) == 1);
    CHECK(magicfs_fstat(r, &st) == 0 && st.st_size == 101 && S_ISREG(st.st_mode));
    CHECK((st.st_mode & 0777) == 0600 && st.st_nlink == 1);
    CHECK(magicfs_pread(r, buf, 10, 50) == 10);
    for (int i = 0; i < 10; i++) CHECK(buf[i] == 0);
    CHECK(magicfs_lseek(r, 0, SEEK_DATA) == 0);
    CHECK(magicfs_ftruncate(w, 11) == 0);
    CHECK(magicfs_fsync(w) == 0);
    CHECK(magicfs_close(w) == 0);

    int a = magicfs_open(s, "dir/a", O_WRONLY | O_APPEND, 0);
    CHECK(a >= 0);
    CHECK(magicfs_lseek(a, 0, SEEK_SET) == 0);
    CHECK(magicfs_write(a, "!", 1) == 1); /* O_APPEND: at the end whatever the offset */
    CHECK(magicfs_lseek(a, 0, SEEK_CUR) == 12);
    CHECK(magicfs_close(a) == 0);
    CHECK(magicfs_pread(r, buf, 64, 0) == 12 && memcmp(buf, "hello World!", 12) == 0);

    /* rename replaces; the open descriptor still reads the renamed file. */
    int b = magicfs_open(s, "b", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(b >= 0 && magicfs_write(b, "old", 3) == 3 && magicfs_close(b) == 0);
    CHECK(magicfs_rename(s, "dir/a", "b") == 0);
    FAILS_WITH(magicfs_stat(s, "dir/a", &st), ENOENT);
    CHECK(magicfs_stat(s, "b", &st) == 0 && st.st_size == 12);
    /* unlink while open: still readable through the descriptor. */
    CHECK(magicfs_unlink(s, "/b") == 0);
    CHECK(magicfs_pread(r, buf, 5, 0) == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK(magicfs_close(r) == 0);

    /* O_TRUNC empties; O_DIRECTORY and O_NOFOLLOW behave as open(2). */
    int t = magicfs_open(s, "dir/t", O_RDWR | O_CREAT, 0644);
    CHECK(t >= 0 && magicfs_write(t, "12345", 5) == 5 && magicfs_close(t) == 0);
    t = magicfs_open(s, "dir/t", O_RDWR | O_TRUNC, 0);
    CHECK(t >= 0 && magicfs_fstat(t, &st) == 0 && st.st_size == 0 && magicfs_close(t) == 0);
    int d = magicfs_open(s, "dir", O_RDONLY | O_DIRECTORY, 0);
    CHECK(d >= 0);
    FAILS_WITH(magicfs_read(d, buf, 1), EISDIR);
    CHECK(magicfs_fstat(d, &st) == 0 && S_ISDIR(st.st_mode) && magicfs_close(d) == 0);
    FAILS_WITH(magicfs_open(s, "dir/t", O_RDONLY | O_DIRECTORY, 0), ENOTDIR);
    CHECK(magicfs_rename(s, "dir", "renamed") == 0);
    CHECK(magicfs_rmdir(s, "renamed") == -1 && errno == ENOTEMPTY);
    CHECK(magicfs_unlink(s, "renamed/t") == 0 && magicfs_rmdir(s, "renamed") == 0);
    FAILS_WITH(magicfs_rmdir(s, "renamed"), ENOENT);
    CHECK(magicfs_store_close(s) == 0);
    printf("posix: all passed\n");
    return 0;
}
