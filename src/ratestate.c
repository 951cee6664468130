/*
 * ratestate.c: the RateLimit state file (see ratestate.h).
 *
 *   header  "TALLYDRL" version:u32 zero:u32 payload_length:u64 hash:u64
 *   payload clock:i64 wall:i64                 the rate clock and the wall clock
 *                                              (ms) when it was written
 *           then per RateLimit plugin:
 *           'T' name:s2 signature:u64 keys:u32 its configured limits' signature
 *           and `keys` times:
 *           key:s2 signature:u64 span:u32 last:i64 windows:u8
 *               and per window: open:u64 stamp:10*u16 first:u8 closed:u8
 *
 * (sN: a string with an N-byte length; record.h.  Numbers in the
 * machine's byte order: the file never leaves the machine.)  The hash
 * (hash.h's hash_bytes) covers the payload, so a file cut short or
 * damaged is told from a whole one.  A key's times (last, and the stamps,
 * which are ticks of the same clock) stay in the rate clock: loading sets
 * that clock to go on from `clock` by the wall-clock time since `wall`.
 *
 * Main thread only; no state of its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "hash.h"
#include "log.h"
#include "ratekeys.h"
#include "ratestate.h"
#include "record.h"

#define MAGIC "TALLYDRL"
#define FORMAT_VERSION 1
#define HEADER_SIZE 32
#define FILE_NAME "ratelimit.state"

char *ratestate_path(const struct config *config)
{
	if (config->ratelimit_state[0] != '\0')
		return xstrdup(config->ratelimit_state);
	if (config->accounting.journal[0] != '\0')
		return xasprintf("%s/%s", config->accounting.journal, FILE_NAME);
	return NULL;
}

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ saving */

struct encoding {
	struct buf *out;
	size_t tables;
	size_t keys;               /* in the whole file */
	uint32_t table_keys;       /* in the table being written */
};

static void encode_key(const char *key, size_t key_len, const struct ratekey_state *state,
		       void *arg)
{
	struct encoding *e = arg;
	uint8_t count = (uint8_t)state->window_count;

	record_put_string(e->out, 2, key, key_len);
	record_put(e->out, &state->signature, 8);
	record_put(e->out, &state->span, 4);
	record_put(e->out, &state->last, 8);
	record_put(e->out, &count, 1);
	for (size_t i = 0; i < state->window_count; i++) {
		const struct ratewindow *w = &state->windows[i];
		record_put(e->out, &w->open, 8);
		record_put(e->out, w->stamp, sizeof(w->stamp));
		record_put(e->out, &w->first, 1);
		record_put(e->out, &w->closed, 1);
	}
	e->table_keys++;
	e->keys++;
}

static void encode_table(struct ratekeys *t, const char *name, uint64_t signature, void *arg)
{
	struct encoding *e = arg;

	e->tables++;
	record_put(e->out, "T", 1);
	record_put_string(e->out, 2, name, strlen(name));
	record_put(e->out, &signature, 8);
	size_t count_at = e->out->len;
	e->table_keys = 0;
	record_put(e->out, &e->table_keys, 4);
	ratekeys_for_each_key(t, encode_key, e);
	memcpy(e->out->data + count_at, &e->table_keys, 4);
}

/* The whole file in `out`; returns how many keys it holds. */
static size_t encode(struct buf *out, size_t *tables)
{
	struct encoding e = { .out = out };
	char header[HEADER_SIZE] = MAGIC;
	uint32_t version = FORMAT_VERSION;
	int64_t clocks[2] = { 0, 0 };

	memcpy(header + 8, &version, 4);
	record_put(out, header, HEADER_SIZE);
	record_put(out, clocks, sizeof(clocks));
	ratekeys_for_each_table(encode_table, &e);
	/* read after the keys: no key's last message is later */
	clocks[0] = ratekeys_clock();
	clocks[1] = wall_ms();
	memcpy(out->data + HEADER_SIZE, clocks, sizeof(clocks));
	uint64_t length = out->len - HEADER_SIZE;
	uint64_t hash = hash_bytes(HASH_SEED, out->data + HEADER_SIZE, length);
	memcpy(out->data + 16, &length, 8);
	memcpy(out->data + 24, &hash, 8);
	*tables = e.tables;
	return e.keys;
}

/* The directory `path` is in (the caller frees it). */
static char *directory_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? xstrndup(path, (size_t)(slash - path) + (slash == path)) : xstrdup(".");
}

/* A rename is durable once the directory is synced too. */
static void sync_directory(const char *path)
{
	char *dir = directory_of(path);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || fsync(fd) < 0)
		log_warning("rate limit state: cannot sync the directory %s: %s", dir, strerror(errno));
	if (fd >= 0)
		close(fd);
	free(dir);
}

/* Writes data to `temporary`, synced; 0 or -1 with errno set. */
static int write_synced(const char *temporary, const struct buf *data)
{
	int fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);

	if (fd < 0)
		return -1;
	bool ok = write_all(fd, buf_head(data), buf_size(data)) == 0 && fsync(fd) == 0;
	int saved = errno;
	if (close(fd) != 0 && ok)
		return -1;
	errno = saved;
	return ok ? 0 : -1;
}

int ratestate_save(const char *path, bool at_stop)
{
	struct buf data;
	size_t tables = 0, keys;

	buf_init(&data);
	keys = encode(&data, &tables);
	if (tables == 0) {
		buf_free(&data);
		return 0;                  /* no RateLimit: the file stays as it is */
	}
	char *temporary = xasprintf("%s.new", path);
	int rc = write_synced(temporary, &data);
	if (rc < 0 && errno == ENOENT) {
		/* the journal directory, when no journal was opened to make it */
		char *dir = directory_of(path);
		if (mkdir(dir, 0700) == 0)
			rc = write_synced(temporary, &data);
		free(dir);
	}
	if (rc == 0)
		rc = rename(temporary, path);
	if (rc < 0) {
		log_error("rate limit state: cannot write %s: %s; a restart would start the "
			  "windows from the last state saved", temporary, strerror(errno));
		unlink(temporary);
	} else {
		sync_directory(path);
		log_msg(at_stop ? LOG_NOTICE : LOG_DEBUG, "rate limit state %s: %zu keys saved",
			path, keys);
	}
	free(temporary);
	buf_free(&data);
	return rc;
}

/* ----------------------------------------------------------------- loading */

struct reading {
	const char *path;
	bool apply;                /* false: only check that every record is whole */
	size_t restored;           /* keys put back */
	size_t expired;            /* keys whose windows emptied since the save */
	size_t skipped;            /* keys of plugins gone or changed */
};

static bool decode_key(const char **p, const char *end, const char **key, size_t *key_len,
		       struct ratekey_state *state)
{
	uint8_t count;

	if (!record_get_string(p, end, 2, key, key_len) ||
	    !record_get(p, end, &state->signature, 8) || !record_get(p, end, &state->span, 4) ||
	    !record_get(p, end, &state->last, 8) || !record_get(p, end, &count, 1) ||
	    count < 1 || count > RATEKEYS_WINDOWS_MAX)
		return false;
	state->window_count = count;
	for (size_t i = 0; i < count; i++) {
		struct ratewindow *w = &state->windows[i];
		if (!record_get(p, end, &w->open, 8) ||
		    !record_get(p, end, w->stamp, sizeof(w->stamp)) ||
		    !record_get(p, end, &w->first, 1) || !record_get(p, end, &w->closed, 1))
			return false;
	}
	return true;
}

/* The table a section of the file is for, or NULL (logged) when its keys
 * are not to be restored. */
static struct ratekeys *section_table(const struct reading *r, const char *name, size_t name_len,
				      uint64_t saved_signature, uint32_t keys)
{
	char *plugin = xstrndup(name, name_len);
	uint64_t signature;
	struct ratekeys *t = ratekeys_find(plugin, &signature);

	if (t == NULL)
		log_notice("rate limit state %s: no RateLimit plugin is named %s now; its %u keys "
			   "are not restored", r->path, plugin, keys);
	else if (signature != saved_signature)
		log_notice("rate limit state %s: the limits or the metric of RateLimit %s changed "
			   "since the state was saved; its %u keys start afresh", r->path, plugin,
			   keys);
	free(plugin);
	return t && signature == saved_signature ? t : NULL;
}

static bool decode_table(struct reading *r, const char **p, const char *end)
{
	const char *name;
	size_t name_len;
	uint64_t signature;
	uint32_t keys;
	char type;

	if (!record_get(p, end, &type, 1) || type != 'T' ||
	    !record_get_string(p, end, 2, &name, &name_len) || name_len == 0 ||
	    !record_get(p, end, &signature, 8) || !record_get(p, end, &keys, 4))
		return false;
	struct ratekeys *t = r->apply ? section_table(r, name, name_len, signature, keys) : NULL;
	for (uint32_t i = 0; i < keys; i++) {
		struct ratekey_state state;
		const char *key;
		size_t key_len;
		if (!decode_key(p, end, &key, &key_len, &state))
			return false;
		if (!r->apply)
			continue;
		if (t == NULL)
			r->skipped++;
		else if (ratekeys_restore(t, key, key_len, &state))
			r->restored++;
		else
			r->expired++;
	}
	return true;
}

/* Reads the payload; false when it is not whole. */
static bool decode(struct reading *r, const char *p, const char *end, int64_t clocks[2])
{
	if (!record_get(&p, end, clocks, 2 * sizeof(int64_t)))
		return false;
	while (p < end) {
		if (!decode_table(r, &p, end))
			return false;
	}
	return true;
}

static int read_file(const char *path, struct buf *out)
{
	char chunk[65536];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		buf_append(out, chunk, (size_t)n);
	int saved = errno;
	close(fd);
	errno = saved;
	return n < 0 ? -1 : 0;
}

/* Why the file's bytes are not a state file this tallyd reads, or NULL. */
static const char *header_problem(const struct buf *data)
{
	uint32_t version;
	uint64_t length, hash;

	if (data->len < HEADER_SIZE || memcmp(data->data, MAGIC, 8) != 0)
		return "not a tallyd rate limit state file";
	memcpy(&version, data->data + 8, 4);
	memcpy(&length, data->data + 16, 8);
	memcpy(&hash, data->data + 24, 8);
	if (version != FORMAT_VERSION)
		return "written in another format version";
	if (length != data->len - HEADER_SIZE)
		return "cut short or damaged (its length does not match)";
	if (hash != hash_bytes(HASH_SEED, data->data + HEADER_SIZE, length))
		return "damaged (its checksum does not match)";
	return NULL;
}

/* The file is renamed out of the way, kept for a look. */
static void set_aside(const char *path, const char *why)
{
	char *aside = xasprintf("%s.damaged", path);

	if (rename(path, aside) == 0)
		log_error("rate limit state %s: %s; set aside as %s, the windows start empty", path,
			  why, aside);
	else
		log_error("rate limit state %s: %s, and it cannot be set aside (%s); the windows "
			  "start empty", path, why, strerror(errno));
	free(aside);
}

void ratestate_load(const char *path)
{
	struct reading r = { .path = path };
	struct buf data;
	int64_t clocks[2];

	buf_init(&data);
	if (read_file(path, &data) < 0) {
		if (errno == ENOENT)
			log_info("rate limit state %s: none yet; the windows start empty", path);
		else
			log_error("rate limit state %s: cannot read it: %s; the windows start empty",
				  path, strerror(errno));
		buf_free(&data);
		return;
	}
	const char *problem = header_problem(&data);
	const char *payload = data.data + HEADER_SIZE, *end = data.data + data.len;
	if (problem == NULL && !decode(&r, payload, end, clocks))
		problem = "damaged (a record is not whole)";
	if (problem) {
		set_aside(path, problem);
		buf_free(&data);
		return;
	}
	/* the rate clock goes on by the wall-clock time that passed (none if
	 * the wall clock went back: the windows are kept, on the safe side) */
	int64_t passed = wall_ms() - clocks[1];
	ratekeys_set_clock(clocks[0] + (passed > 0 ? passed : 0));
	r.apply = true;
	decode(&r, payload, end, clocks);
	log_notice("rate limit state %s: %zu keys restored, saved %lld seconds ago (%zu whose "
		   "windows emptied since, %zu of plugins gone or changed, left out)", path,
		   r.restored, (long long)(passed > 0 ? passed / 1000 : 0), r.expired, r.skipped);
	buf_free(&data);
}
