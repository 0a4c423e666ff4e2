/* A program stored in MagicFS runs from an exported memfd: /bin/echo is
 * copied into a store, exported, and fexecve'd in a child; its output
 * comes back through a pipe. */
#define _GNU_SOURCE
#include "magicfs.h"
#include "check.h"
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(void) {
    magicfs_store *s = magicfs_store_open(NULL, 0);
    CHECK(s != NULL && magicfs_mkdir(s, "bin", 0755) == 0);
    int in = open("/bin/echo", O_RDONLY);
    CHECK(in >= 0);
    int out = magicfs_open(s, "bin/echo", O_WRONLY | O_CREAT | O_EXCL, 0755);
    CHECK(out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0) CHECK(magicfs_write(out, buf, n) == n);
    CHECK(n == 0 && close(in) == 0 && magicfs_close(out) == 0);

    int memfd = magicfs_export_memfd(s, "/bin/echo", 0);
    CHECK(memfd >= 0);
    struct stat st, orig;
    CHECK(fstat(memfd, &st) == 0 && stat("/bin/echo", &orig) == 0 && st.st_size == orig.st_size);
    int pipefd[2];
    CHECK(pipe(pipefd) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(pipefd[1], 1);
        close(pipefd[0]);
        char *argv[] = {"echo", "hello from a memfd", NULL};
        fexecve(memfd, argv, environ);
        _exit(127); /* fexecve failed */
    }
    close(pipefd[1]);
    char got[128] = {0};
    ssize_t total = 0;
    while ((n = read(pipefd[0], got + total, sizeof got - 1 - total)) > 0) total += n;
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(strcmp(got, "hello from a memfd\n") == 0);
    close(memfd);
    CHECK(magicfs_store_close(s) == 0);
    printf("fexecve: all passed\n");
    return 0;
}
