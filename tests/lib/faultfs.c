/*
 * faultfs.c: an LD_PRELOAD library that makes write() fail on demand, for
 * the tests of what tallyd does when its disk fails (a full disk, an I/O
 * error, a write cut short) -- failures a test cannot produce for real on
 * demand -- and that tells which directories were fsynced.  Built by the
 * tests (cc -shared -fPIC faultfs.c -ldl).
 *
 *   FAULTFS_MATCH    only writes to files whose path holds this fail
 *   FAULTFS_CONTROL  a file whose first word says what such writes do now:
 *                    ok (or no file), enospc, eio, or short (half the
 *                    bytes asked, down to the last one, which fails with
 *                    ENOSPC)
 *   FAULTFS_FSYNC_LOG  a file that gets a line (the path) for every fsync()
 *                    of a directory
 *
 * The control file is read at every matching write, so a test switches the
 * fault on and off while tallyd runs.  Any thread.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static ssize_t (*real_write)(int fd, const void *data, size_t count);

enum mode { OK, ENOSPC_ALWAYS, EIO_ALWAYS, SHORT };

/* What the control file says now. */
static enum mode mode_now(void)
{
	const char *control = getenv("FAULTFS_CONTROL");
	char word[16] = "";

	if (control == NULL)
		return OK;
	int fd = open(control, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, word, sizeof(word) - 1);
		word[n > 0 ? n : 0] = '\0';
		close(fd);
	}
	word[strcspn(word, " \n")] = '\0';
	return strcmp(word, "enospc") == 0 ? ENOSPC_ALWAYS : strcmp(word, "eio") == 0 ? EIO_ALWAYS :
	       strcmp(word, "short") == 0 ? SHORT : OK;
}

/* The path fd is open on, into path[4096]; false when unknown. */
static bool path_of(int fd, char *path)
{
	char link[64];

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, 4095);
	if (n <= 0)
		return false;
	path[n] = '\0';
	return true;
}

static bool matches(int fd, const char *match)
{
	char path[4096];

	return path_of(fd, path) && strstr(path, match) != NULL;
}

int fsync(int fd)
{
	static int (*real_fsync)(int fd);
	const char *log = getenv("FAULTFS_FSYNC_LOG");
	struct stat st;
	char path[4096];

	if (real_fsync == NULL)
		real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	if (log != NULL && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) && path_of(fd, path)) {
		FILE *f = fopen(log, "a");
		if (f != NULL) {
			fprintf(f, "%s\n", path);
			fclose(f);
		}
	}
	return real_fsync(fd);
}

ssize_t write(int fd, const void *data, size_t count)
{
	const char *match = getenv("FAULTFS_MATCH");

	if (real_write == NULL)
		real_write = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
	if (match != NULL && count > 0 && matches(fd, match)) {
		enum mode mode = mode_now();
		if (mode == SHORT && count > 1)
			return real_write(fd, data, count / 2);
		if (mode != OK) {
			errno = mode == EIO_ALWAYS ? EIO : ENOSPC;
			return -1;
		}
	}
	return real_write(fd, data, count);
}
