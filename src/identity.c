/*
 * identity.c: the instance id and the owner token (see identity.h).
 *
 * Set once by the main thread at start; the strings are read-only after
 * that.  `lock_fd` keeps the journal directory's `instance` file locked
 * until exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "identity.h"
#include "log.h"

static char *instance;
static char owner[200];
static char my_boot[40];
static int lock_fd = -1;

static void host_name(char *out, size_t size)
{
	snprintf(out, size, "localhost");
	if (gethostname(out, size - 1) < 0 || out[0] == '\0')
		snprintf(out, size, "localhost");
	out[size - 1] = '\0';
}

/* The kernel's id of this boot: a process of another boot is gone. */
static void boot_id(char *out, size_t size)
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");

	snprintf(out, size, "unknown");
	if (f != NULL) {
		if (fscanf(f, "%39s", out) != 1)
			snprintf(out, size, "unknown");
		fclose(f);
	}
}

/* A new id: the host name and 8 random hex digits. */
static char *new_instance(void)
{
	char host[256];
	uint32_t suffix = 0;

	host_name(host, sizeof(host));
	if (getrandom(&suffix, sizeof(suffix), 0) != (ssize_t)sizeof(suffix))
		suffix = (uint32_t)getpid() ^ (uint32_t)time(NULL);
	return xasprintf("%s-%08x", host, suffix);
}

/* What tallyd used before ids were kept: host/first listen entry. */
static char *listen_instance(const struct config *config)
{
	char host[256];

	host_name(host, sizeof(host));
	return xasprintf("%s/%s", host, config->listen_count > 0 ? config->listen[0].spec : "");
}

/* Reads the id kept in the locked file (NULL when it holds none). */
static char *read_kept(int fd)
{
	char text[300];
	ssize_t n = pread(fd, text, sizeof(text) - 1, 0);

	if (n <= 0)
		return NULL;
	text[n] = '\0';
	text[strcspn(text, "\n")] = '\0';
	return text[0] ? xstrdup(text) : NULL;
}

/* Replaces the file's content with id (and a newline), on disk. */
static int write_kept(int fd, const char *id)
{
	size_t len = strlen(id);
	char *line = xasprintf("%s\n", id);
	int rc = ftruncate(fd, 0) == 0 && pwrite(fd, line, len + 1, 0) == (ssize_t)(len + 1) &&
		fsync(fd) == 0 ? 0 : -1;

	free(line);
	return rc;
}

/* Opens and locks DIR/instance; -1 with error[] set. */
static int lock_kept(const char *dir, char *error, size_t size)
{
	char *path = xasprintf("%s/instance", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);

	if (fd < 0)
		snprintf(error, size, "cannot open %s: %s", path, strerror(errno));
	else if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		snprintf(error, size, "%s is locked: another tallyd uses the journal directory %s",
			 path, dir);
		close(fd);
		fd = -1;
	}
	free(path);
	return fd;
}

/* The id with a journal: kept in DIR/instance; config's id wins unless
 * the journal holds a flush only the kept id can resolve. */
static int journal_instance(const struct config *config, uint64_t replay_unknown,
			    char *error, size_t size)
{
	const char *dir = config->accounting.journal;
	const char *wanted = config->instance_id;

	lock_fd = lock_kept(dir, error, size);
	if (lock_fd < 0)
		return -1;
	char *kept = read_kept(lock_fd);
	if (kept != NULL && wanted[0] != '\0' && strcmp(kept, wanted) != 0 && replay_unknown) {
		snprintf(error, size, "the journal in %s holds flush %llu of unknown outcome, "
			 "written as instance \"%s\"; start once with instance_id = \"%s\" (or unset) "
			 "so it can be resolved, then change it", dir,
			 (unsigned long long)replay_unknown, kept, kept);
		free(kept);
		return -1;
	}
	if (wanted[0] != '\0')
		instance = xstrdup(wanted);
	else if (kept != NULL)
		instance = xstrdup(kept);
	else     /* a journal from before ids were kept is resolved under the old id */
		instance = replay_unknown ? listen_instance(config) : new_instance();
	if (kept == NULL || strcmp(kept, instance) != 0) {
		if (kept != NULL)
			log_notice("instance id changed from \"%s\" to \"%s\"", kept, instance);
		if (write_kept(lock_fd, instance) < 0) {
			snprintf(error, size, "cannot write %s/instance: %s", dir, strerror(errno));
			free(kept);
			return -1;
		}
	}
	free(kept);
	return 0;
}

int identity_init(const struct config *config, uint64_t replay_unknown, char *error,
		  size_t size)
{
	char host[256];

	host_name(host, sizeof(host));
	boot_id(my_boot, sizeof(my_boot));
	snprintf(owner, sizeof(owner), "%.100s pid %ld boot %s", host, (long)getpid(), my_boot);
	if (config->accounting.journal[0] != '\0')
		return journal_instance(config, replay_unknown, error, size);
	instance = config->instance_id[0] ? xstrdup(config->instance_id) : listen_instance(config);
	return 0;
}

void identity_free(void)
{
	free(instance);
	instance = NULL;
	if (lock_fd >= 0)
		close(lock_fd);
	lock_fd = -1;
}

const char *identity_instance(void)
{
	return instance;
}

const char *identity_owner(void)
{
	return owner;
}

/* An earlier process of this machine and boot that no longer runs. */
static bool predecessor_gone(const char *holder)
{
	char host[256], boot[40], my_host[256];
	long pid;

	if (sscanf(holder, "%255s pid %ld boot %39s", host, &pid, boot) != 3)
		return false;
	host_name(my_host, sizeof(my_host));
	if (strncmp(host, my_host, 100) != 0 || strcmp(boot, my_boot) != 0)
		return false;
	return pid == (long)getpid() || (kill((pid_t)pid, 0) < 0 && errno == ESRCH);
}

bool identity_may_take(const char *holder, int64_t age)
{
	return holder[0] == '\0' || strcmp(holder, owner) == 0 || age >= IDENTITY_LEASE ||
		predecessor_gone(holder);
}
