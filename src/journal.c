/*
 * journal.c: the crash-safety journal (see journal.h).
 *
 * Files: DIR/segment-NNNNNNNNNNNNNNNN, each a 16-byte header ("TALLYDJ1",
 * a flags byte: BASE = this segment supersedes every older one) and then
 * batches: u32 payload length, u32 zero, u64 hash of the payload, payload.
 * A payload is records: 'R' take table time key values (an increment),
 * 'I' seq take (intent: flush seq carries takes <= take), 'C' seq take
 * (committed), 'S' seq take (the snapshot before it holds the totals of
 * takes <= take), and the snapshot's own records (snapshot.c).  A torn
 * batch at a segment's end is ignored: a write the crash cut off, so its
 * requests had no answer yet (unless a power cut without journal_sync
 * lost what the kernel had taken).  Damaged bytes elsewhere are skipped
 * up to the next batch whose length and hash hold, and counted; a file
 * that is no segment is renamed *.damaged.
 *
 * A write the disk refuses (ENOSPC, EIO, cut short) is given up: the file
 * is cut back to `good_size` before anything else is appended, and the
 * payload range is kept in `failed`, so that journal_wait() can say which
 * records are only in memory.
 *
 * Snapshots: segments are numbered with a gap (each rotation skips one
 * number), so that a snapshot taken right after a commit can be written
 * as a BASE segment into the gap below the current segment: everything
 * older is in its totals, everything newer is read after it.  Segments
 * are deleted only when a snapshot supersedes them, so that increments
 * committed after a snapshot still reach a restart that finds the
 * database away.
 *
 * Locking: a thread encodes its records into its own buffer (`mine`),
 * unlocked, and moves them into `pending` when it waits for them.  `lock`
 * guards `pending`, the byte counters (`appended`, `settled`), the
 * given-up ranges, `writing`, `line`, `fd`, `good_size` and `torn`.
 * One thread at a time is the writer (`writing`): it takes the pending
 * records, unlocks, writes them, locks again.  A thread that finds a
 * writer gets in `line` and sleeps on its own semaphore; the writer, when
 * done, wakes only those whose records it settled, and the longest
 * waiting of the others, to write the next batch unless a running thread
 * takes the role first.  The flusher takes the writer's role the same way
 * to rotate segments, so no thread writes to the file while holding the
 * lock.  `segment`, `rotated_at` and `gap_free` belong to the flusher
 * thread alone.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "hash.h"
#include "journal.h"
#include "log.h"
#include "record.h"
#include "snapshot.h"
#include "tables.h"

#define MAGIC "TALLYDJ1"
#define HEADER_SIZE 16
#define FLAG_BASE 1
#define BATCH_HEADER 16
#define FAILED_RANGES 64

/* A thread in line for the writer's role: one whose records [start, end)
 * (offsets into all payload bytes ever recorded) are not settled yet, or
 * one that needs the role itself, to rotate or to close (end: UINT64_MAX).
 * It lives on its thread's stack; the writer that takes it out of line
 * wakes it. */
struct waiter {
	struct waiter *next;
	uint64_t start, end;
	bool settled;              /* woken because its records are; else to try again */
	bool durable;              /* with settled: none of its records was given up */
	sem_t wake;
};

static struct {
	bool enabled;
	bool sync;
	char *dir;
	pthread_mutex_t lock;
	struct buf pending;        /* records not yet written */
	struct buf writing_buf;    /* the writer's batch */
	uint64_t appended;         /* payload bytes ever recorded */
	uint64_t settled;          /* payload bytes ever written, or given up */
	struct { uint64_t from, to; } failed[FAILED_RANGES];  /* the latest batches given up */
	uint64_t failures;         /* batches given up, ever */
	bool writing;
	struct waiter *line;       /* the threads waiting, the latest first */
	int fd;
	off_t good_size;           /* of fd's file: the bytes known written */
	bool torn;                 /* bytes past good_size could not be cut off yet */
	uint64_t segment;
	uint64_t rotated_at;       /* `appended` at the last rotation */
	bool gap_free;             /* segment - 1 can take a snapshot */
} j = { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1 };

/* This thread's records since its last journal_wait(), encoded without
 * the lock (no other thread touches them); freed when the thread ends,
 * through `mine_key` (made once, by journal_open()). */
static _Thread_local struct buf *mine;
static pthread_key_t mine_key;
static pthread_once_t mine_once = PTHREAD_ONCE_INIT;
static int mine_key_error;

bool journal_enabled(void)
{
	return j.enabled;
}

/* ---------------------------------------------------------------- encoding */

static void encode_record(struct buf *b, uint32_t take, const char *table, const char *key,
			  size_t key_len, const char *time, size_t time_len,
			  const struct metric_values *delta)
{
	record_put(b, "R", 1);
	record_put(b, &take, sizeof(take));
	record_put_string(b, 1, table, strlen(table));
	record_put_string(b, 1, time, time_len);
	record_put_string(b, 1, key, key_len);
	record_put(b, delta->v, sizeof(delta->v));
}

static void encode_marker(struct buf *b, char type, uint64_t seq, uint32_t take)
{
	record_put(b, &type, 1);
	record_put(b, &seq, sizeof(seq));
	record_put(b, &take, sizeof(take));
}

/* --------------------------------------------------------------- segments */

static char *segment_path(uint64_t number)
{
	return xasprintf("%s/segment-%016llu", j.dir, (unsigned long long)number);
}

/* A batch is built in one buffer that begins with room for its header, so
 * that it goes to the file in one write(). */
static void batch_start(struct buf *batch)
{
	static const char room[BATCH_HEADER];

	buf_reset(batch);
	buf_append(batch, room, sizeof(room));
}

static size_t batch_payload(const struct buf *batch)
{
	return batch->len - BATCH_HEADER;
}

/* Fills in the batch's header and writes it (nothing when it is empty). */
static int write_batch(int fd, struct buf *batch)
{
	uint32_t len = (uint32_t)batch_payload(batch);

	if (len == 0)
		return 0;
	uint64_t hash = hash_bytes(HASH_SEED, batch->data + BATCH_HEADER, len);
	memcpy(batch->data, &len, 4);
	memcpy(batch->data + 8, &hash, 8);
	if (write_all(fd, batch->data, batch->len) < 0)
		return -1;
	return j.sync ? fdatasync(fd) : 0;
}

/* With journal_sync, a rename or an unlink is durable only once the
 * directory is synced too. */
static void sync_dir(void)
{
	if (!j.sync)
		return;
	int fd = open(j.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		log_warning("journal: cannot sync the directory %s: %s", j.dir, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* The file's size: what create_segment() wrote. */
static off_t segment_size(const struct buf *content)
{
	return HEADER_SIZE + (content && batch_payload(content) ? (off_t)content->len : 0);
}

/* A new segment, with the batch `content` (or none) in it. */
static int create_segment(uint64_t number, bool base, struct buf *content)
{
	char header[HEADER_SIZE] = MAGIC;
	char *path = segment_path(number);
	char *temporary = xasprintf("%s.new", path);
	int fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	header[8] = base ? FLAG_BASE : 0;
	/* a base segment must appear whole: it supersedes the older ones */
	if (fd < 0 || write_all(fd, header, sizeof(header)) < 0 ||
	    (content && write_batch(fd, content) < 0) || ((base || j.sync) && fsync(fd) < 0) ||
	    rename(temporary, path) < 0) {
		log_error("journal: cannot write %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	} else {
		close(fd);
		sync_dir();
		fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	}
	if (fd < 0)
		unlink(temporary);
	free(temporary);
	free(path);
	return fd;
}

static void delete_segment(uint64_t number)
{
	char *path = segment_path(number);

	if (unlink(path) < 0 && errno != ENOENT)
		log_warning("journal: cannot remove %s: %s", path, strerror(errno));
	else
		sync_dir();
	free(path);
}

/* ---------------------------------------------------------------- writing */

static void free_mine(void *records)
{
	buf_free(records);
	free(records);
}

static void create_mine_key(void)
{
	mine_key_error = pthread_key_create(&mine_key, free_mine);
}

static struct buf *my_records(void)
{
	if (mine == NULL) {
		mine = xcalloc(1, sizeof(*mine));
		pthread_setspecific(mine_key, mine);
	}
	return mine;
}

void journal_record(uint32_t take, int period, const char *key, size_t key_len,
		    const struct metric_values *delta)
{
	size_t time_len;

	if (!j.enabled)
		return;
	const char *name = tables_name(periods_table(period));
	const char *time = periods_time(period, &time_len);
	encode_record(my_records(), take, name, key, key_len, time, time_len, delta);
}

/* Cuts the file back to its last whole batch after a failed write, so that
 * nothing is appended behind a torn one; true when it is whole. */
static bool cut_back(int fd, off_t good_size)
{
	return ftruncate(fd, good_size) == 0;
}

/* The writer writes what is pending (lock held on entry and exit, not
 * during I/O).  A batch the disk refuses (ENOSPC, EIO, a short write) is
 * given up: the file is cut back to its last whole batch before anything
 * else is written, and the batch's range is remembered, so that
 * journal_wait() tells its threads. */
static void write_pending(void)
{
	static _Atomic long long last_complaint;
	struct buf batch;

	if (batch_payload(&j.pending) == 0)
		return;
	batch = j.pending;
	j.pending = j.writing_buf;
	batch_start(&j.pending);
	int fd = j.fd;
	off_t good = j.good_size;
	bool torn = j.torn;
	pthread_mutex_unlock(&j.lock);

	bool written = (!torn || cut_back(fd, good)) && write_batch(fd, &batch) == 0;
	int err = errno;
	if (!written)
		torn = !cut_back(fd, good);
	if (!written && log_ratelimit(&last_complaint, 10))
		log_error("journal: write failed: %s; the answers go on, but their increments are "
			  "only in memory (and in the database after a flush) until it works again; "
			  "flushes wait meanwhile", strerror(err));

	pthread_mutex_lock(&j.lock);
	if (written) {
		j.good_size = good + (off_t)batch.len;
		j.torn = false;
	} else {
		j.torn = torn;
		j.failed[j.failures++ % FAILED_RANGES].from = j.settled;
		j.failed[(j.failures - 1) % FAILED_RANGES].to = j.settled + batch_payload(&batch);
	}
	j.settled += batch_payload(&batch);
	j.writing_buf = batch;
}

/* True when a batch given up overlaps [from, to) (lock held). */
static bool given_up(uint64_t from, uint64_t to)
{
	uint64_t n = j.failures < FAILED_RANGES ? j.failures : FAILED_RANGES;

	for (uint64_t i = 0; i < n; i++) {
		if (j.failed[i].from < to && from < j.failed[i].to)
			return true;
	}
	return false;
}

/* Sleeps in line (lock held on entry): true, lock released, when a writer
 * settled w's records; false, lock held, when w is to try again. */
static bool wait_in_line(struct waiter *w)
{
	w->settled = false;
	sem_init(&w->wake, 0, 0);
	w->next = j.line;
	j.line = w;
	pthread_mutex_unlock(&j.lock);
	while (sem_wait(&w->wake) < 0 && errno == EINTR)
		continue;
	sem_destroy(&w->wake);
	if (!w->settled)
		pthread_mutex_lock(&j.lock);
	return w->settled;
}

/* Makes this thread the writer (lock held on entry): true, lock held; or
 * false, lock released, when a writer settled w's records meanwhile. */
static bool take_turn(struct waiter *w)
{
	for (;;) {
		if (w->end <= j.settled) {
			w->durable = !given_up(w->start, w->end);
			pthread_mutex_unlock(&j.lock);
			return false;
		}
		if (!j.writing) {
			j.writing = true;
			return true;
		}
		if (wait_in_line(w))
			return false;
	}
}

/* Takes w out of line and puts it on *woken. */
static void leave_line(struct waiter **link, struct waiter **woken)
{
	struct waiter *w = *link;

	*link = w->next;
	w->next = *woken;
	*woken = w;
}

/* Ends the writer's turn (lock held on entry, released): the threads whose
 * records are settled leave the line and are woken, and so is the one
 * waiting longest of the others, to write them unless a thread that is
 * running writes them first: the role does not wait for a thread to wake. */
static void finish_turn(void)
{
	struct waiter **link = &j.line, **oldest = NULL, *woken = NULL;

	while (*link != NULL) {
		struct waiter *w = *link;
		if (w->end > j.settled) {
			oldest = link;
			link = &w->next;
			continue;
		}
		w->settled = true;
		w->durable = !given_up(w->start, w->end);
		leave_line(link, &woken);
	}
	j.writing = false;
	if (oldest != NULL)
		leave_line(oldest, &woken);
	pthread_mutex_unlock(&j.lock);
	while (woken != NULL) {
		struct waiter *w = woken;
		woken = w->next;          /* w is gone once it is woken */
		sem_post(&w->wake);
	}
}

bool journal_wait(void)
{
	struct waiter me;

	if (!j.enabled || mine == NULL || mine->len == 0)
		return true;
	pthread_mutex_lock(&j.lock);
	me.start = j.appended;
	buf_append(&j.pending, mine->data, mine->len);
	j.appended += mine->len;
	me.end = j.appended;
	buf_reset(mine);
	if (!take_turn(&me))
		return me.durable;
	write_pending();              /* my records are pending: they go now */
	me.durable = !given_up(me.start, me.end);
	finish_turn();
	return me.durable;
}

uint64_t journal_failures(void)
{
	pthread_mutex_lock(&j.lock);
	uint64_t failures = j.failures;
	pthread_mutex_unlock(&j.lock);
	return failures;
}

void journal_rotate(void)
{
	if (!j.enabled)
		return;
	pthread_mutex_lock(&j.lock);
	uint64_t appended = j.appended;
	pthread_mutex_unlock(&j.lock);
	if (appended == j.rotated_at)
		return;               /* nothing new: an idle relay keeps its segment */

	/* only the flusher creates segments: prepare the next one unlocked,
	 * leaving a number free below it for a snapshot */
	uint64_t next = j.segment + 2;
	int fd = create_segment(next, false, NULL);
	if (fd < 0)
		return;               /* logged; keep writing to the old one */

	struct waiter me = { .end = UINT64_MAX };   /* never settled: becomes the writer */
	pthread_mutex_lock(&j.lock);
	take_turn(&me);
	int old_fd = j.fd;
	j.fd = fd;
	j.good_size = segment_size(NULL);
	j.torn = false;
	j.segment = next;
	j.rotated_at = j.appended;
	finish_turn();
	close(old_fd);
	j.gap_free = true;
}

static bool write_marker(char type, uint64_t seq, uint32_t take)
{
	encode_marker(my_records(), type, seq, take);
	return journal_wait();
}

bool journal_intent(uint64_t seq, uint32_t take)
{
	return !j.enabled || write_marker('I', seq, take);
}

void journal_committed(uint64_t seq, uint32_t take)
{
	if (j.enabled)
		write_marker('C', seq, take);
}

static uint64_t *list_segments(size_t *count);

/* Deletes every segment numbered below `number`. */
static void delete_below(uint64_t number)
{
	size_t count;
	uint64_t *numbers = list_segments(&count);

	for (size_t i = 0; i < count && numbers[i] < number; i++)
		delete_segment(numbers[i]);
	free(numbers);
}

/* The snapshot's records, then the markers that place it. */
static void encode_snapshot(struct buf *b, uint64_t seq, uint32_t take)
{
	snapshot_encode(b);
	encode_marker(b, 'C', seq, take);
	encode_marker(b, 'S', seq, take);
}

bool journal_snapshot(uint64_t seq, uint32_t take)
{
	struct buf b;

	if (!j.enabled || !j.gap_free)
		return false;
	buf_init(&b);
	batch_start(&b);
	encode_snapshot(&b, seq, take);
	uint64_t number = j.segment - 1;
	int fd = create_segment(number, true, &b);
	buf_free(&b);
	if (fd < 0)
		return false;                   /* logged; the segments stay */
	close(fd);
	j.gap_free = false;
	delete_below(number);
	return true;
}

/* ----------------------------------------------------------------- replay */

struct replayed {
	uint32_t take;
	char table[65];
	const char *time, *key;     /* point into the segment's bytes */
	size_t time_len, key_len;
	struct metric_values values;
};

struct reading {
	struct replayed *records;
	size_t count, cap;
	uint32_t committed_take;    /* the last 'C' marker's */
	bool has_committed;
	uint32_t snapshot_take;     /* the snapshot holds the totals of takes <= this */
	bool has_snapshot;
	uint64_t intent_seq;        /* the last 'I' marker after it, or 0 */
	uint32_t intent_take;
	size_t damaged_bytes;       /* skipped between intact batches */
	struct snapshot_reader snapshot;
	char **contents;            /* segment bytes, kept while records point in */
	size_t content_count;
};

static bool parse_record(struct reading *r, const char **p, const char *end)
{
	struct replayed rec = { 0 };
	const char *table;
	size_t table_len;

	if (!record_get(p, end, &rec.take, 4) ||
	    !record_get_string(p, end, 1, &table, &table_len) ||
	    !record_get_string(p, end, 1, &rec.time, &rec.time_len) ||
	    !record_get_string(p, end, 1, &rec.key, &rec.key_len) ||
	    !record_get(p, end, rec.values.v, sizeof(rec.values.v)) || table_len >= sizeof(rec.table))
		return false;
	memcpy(rec.table, table, table_len);
	rec.table[table_len] = '\0';
	if (r->count == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 1024;
		r->records = xrealloc(r->records, r->cap * sizeof(*r->records));
	}
	r->records[r->count++] = rec;
	return true;
}

static bool parse_payload(struct reading *r, const char *p, const char *end)
{
	while (p < end) {
		char type = *p++;
		uint64_t seq;
		uint32_t take;

		if (type == 'R') {
			if (!parse_record(r, &p, end))
				return false;
		} else if (snapshot_has_type(type)) {
			if (!snapshot_decode(&r->snapshot, type, &p, end))
				return false;
		} else if ((type == 'I' || type == 'C' || type == 'S') &&
			   record_get(&p, end, &seq, 8) && record_get(&p, end, &take, 4)) {
			if (type == 'C') {
				r->committed_take = take;
				r->has_committed = true;
				r->intent_seq = 0;
			} else if (type == 'S') {
				r->snapshot_take = take;
				r->has_snapshot = true;
			} else {
				r->intent_seq = seq;
				r->intent_take = take;
			}
		} else {
			return false;
		}
	}
	return true;
}

/* The batch at p: its end, when its length fits and its checksum holds;
 * NULL otherwise.  Reads nothing into r. */
static const char *intact_batch(const char *p, const char *end)
{
	uint32_t len, pad;
	uint64_t hash;

	if ((size_t)(end - p) < BATCH_HEADER)
		return NULL;
	memcpy(&len, p, 4);
	memcpy(&pad, p + 4, 4);
	memcpy(&hash, p + 8, 8);
	if (pad != 0 || len == 0 || (size_t)(end - p - BATCH_HEADER) < len ||
	    hash_bytes(HASH_SEED, p + BATCH_HEADER, len) != hash)
		return NULL;
	return p + BATCH_HEADER + len;
}

/* Reads one segment's batches.  Damaged bytes (a flipped bit, a block of
 * zeros from a power cut) are skipped up to the next intact batch, and
 * counted; a batch cut short at the end is a write a crash interrupted,
 * whose answers were never sent. */
static void read_segment(struct reading *r, const char *path, const char *data, size_t size)
{
	const char *p = data + HEADER_SIZE, *end = data + size;

	while (p < end) {
		const char *next = intact_batch(p, end);
		if (next != NULL && parse_payload(r, p + BATCH_HEADER, next)) {
			p = next;
			continue;
		}
		const char *resume = p + 1;
		while (resume < end && intact_batch(resume, end) == NULL)
			resume++;
		uint32_t len = 0;
		if ((size_t)(end - p) >= 4)
			memcpy(&len, p, 4);
		if (resume == end && (size_t)(end - p) < BATCH_HEADER + (size_t)len) {
			log_warning("journal: %s: the last batch, at byte %td, is incomplete and "
				    "ignored: a write cut off by the crash, whose requests had no "
				    "answer yet (after a power cut without journal_sync, some may "
				    "have had one)", path, p - data);
			return;
		}
		log_error("journal: %s: %td damaged bytes at byte %td skipped: the increments in "
			  "them are lost (written before later batches, so most likely "
			  "answered)%s", path, resume - p, p - data,
			  resume < end ? "; the batches after them are read" : "");
		r->damaged_bytes += (size_t)(resume - p);
		p = resume;
	}
}

static int load_file(const char *path, char **data, size_t *size)
{
	struct buf b;
	char chunk[65536];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	buf_init(&b);
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		buf_append(&b, chunk, (size_t)n);
	close(fd);
	if (n < 0) {
		buf_free(&b);
		return -1;
	}
	*data = b.data ? b.data : xstrdup("");
	*size = b.len;
	return 0;
}

static int compare_numbers(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* The segment numbers in the directory, sorted. */
static uint64_t *list_segments(size_t *count)
{
	DIR *d = opendir(j.dir);
	struct dirent *e;
	uint64_t *numbers = NULL;

	*count = 0;
	while (d && (e = readdir(d)) != NULL) {
		unsigned long long n;
		char rest;
		if (sscanf(e->d_name, "segment-%16llu%c", &n, &rest) != 1)
			continue;   /* also skips "*.new" left by a crash */
		numbers = xrealloc(numbers, (*count + 1) * sizeof(*numbers));
		numbers[(*count)++] = n;
	}
	if (d)
		closedir(d);
	if (*count > 1)
		qsort(numbers, *count, sizeof(*numbers), compare_numbers);
	return numbers;
}

/* A file named like a segment that is none (empty, or another program's:
 * what a power cut without journal_sync can leave) is renamed out of the
 * way, kept for a look; 0, or -1 when it cannot be. */
static int set_aside(const char *path)
{
	char *aside = xasprintf("%s.damaged", path);
	int rc = rename(path, aside);

	if (rc == 0)
		log_error("journal: %s is empty or not a tallyd journal segment; set aside as %s",
			  path, aside);
	free(aside);
	return rc;
}

/* Reads every segment from the newest base one on; *count drops the
 * files set aside (numbers[] closes up). */
static int read_all(struct reading *r, uint64_t *numbers, size_t *count, char *error,
		    size_t error_size)
{
	size_t first = 0, kept = 0;
	char **datas = xcalloc(*count + 1, sizeof(char *));
	size_t *sizes = xcalloc(*count + 1, sizeof(size_t));

	r->contents = datas;           /* freed by free_reading(), even on error */
	for (size_t i = 0; i < *count; i++) {
		char *path = segment_path(numbers[i]);
		if (load_file(path, &datas[kept], &sizes[kept]) < 0) {
			snprintf(error, error_size, "cannot read %s: %s", path, strerror(errno));
			r->content_count = kept;
			free(path);
			free(sizes);
			return -1;
		}
		if (sizes[kept] < HEADER_SIZE || memcmp(datas[kept], MAGIC, 8) != 0) {
			free(datas[kept]);
			datas[kept] = NULL;
			int rc = set_aside(path);
			if (rc < 0)
				snprintf(error, error_size, "%s is not a tallyd journal segment and "
					 "cannot be set aside: %s", path, strerror(errno));
			free(path);
			if (rc < 0) {
				r->content_count = kept;
				free(sizes);
				return -1;
			}
			continue;
		}
		if (datas[kept][8] & FLAG_BASE)
			first = kept;
		numbers[kept++] = numbers[i];
		free(path);
	}
	*count = kept;
	r->content_count = kept;
	for (size_t i = first; i < kept; i++) {
		char *path = segment_path(numbers[i]);
		read_segment(r, path, datas[i], sizes[i]);
		free(path);
	}
	free(sizes);
	return 0;
}

/* Puts the increments back and writes them into a new base segment, with
 * a snapshot that holds the increments committed since the last one. */
static void restore(struct reading *r, struct journal_replay *replay, struct buf *base)
{
	uint32_t known = r->has_committed ? r->committed_take : 0;

	for (size_t i = 0; i < r->count; i++) {
		struct replayed *rec = &r->records[i];
		int table = tables_register(rec->table);
		int period = table < 0 ? -1 : periods_get(table, rec->time, rec->time_len);
		if (period < 0)
			continue;
		if (r->has_committed && rec->take <= known) {     /* in the database */
			if (r->has_snapshot && rec->take > r->snapshot_take)
				counters_restore_settled(period, rec->key, rec->key_len, &rec->values);
			continue;
		}
		bool unknown = r->intent_seq != 0 && rec->take <= r->intent_take;
		if (unknown) {
			counters_restore_in_flight(period, rec->key, rec->key_len, &rec->values,
						   &replay->in_flight);
			encode_record(base, 0, rec->table, rec->key, rec->key_len, rec->time,
				      rec->time_len, &rec->values);
		} else {
			uint32_t take = counters_add(period, rec->key, rec->key_len, &rec->values);
			encode_record(base, take, rec->table, rec->key, rec->key_len, rec->time,
				      rec->time_len, &rec->values);
		}
		replay->restored++;
	}
	replay->records = r->count;
	replay->damaged_bytes = r->damaged_bytes;
	replay->snapshot_keys = r->snapshot.keys;
	replay->snapshot_configs = r->snapshot.configs;
	/* the totals as of now; this run's takes start again at 1 */
	if (r->intent_seq != 0 && replay->in_flight.count > 0) {
		replay->unknown_seq = r->intent_seq;
		snapshot_encode(base);
		encode_marker(base, 'S', 0, 0);
		encode_marker(base, 'I', r->intent_seq, 0);
	} else {
		encode_snapshot(base, 0, 0);
	}
}

static void free_reading(struct reading *r)
{
	for (size_t i = 0; i < r->content_count; i++)
		free(r->contents[i]);
	free(r->contents);
	free(r->records);
	snapshot_reader_free(&r->snapshot);
}

int journal_open(const char *dir, bool sync, struct journal_replay *replay, char *error,
		 size_t error_size)
{
	struct reading r = { 0 };
	struct buf base;
	size_t count;

	memset(replay, 0, sizeof(*replay));
	pthread_once(&mine_once, create_mine_key);
	if (mine_key_error != 0) {
		snprintf(error, error_size, "cannot create a thread key: %s", strerror(mine_key_error));
		return -1;
	}
	j.dir = xstrdup(dir);
	j.sync = sync;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(error, error_size, "cannot create journal directory %s: %s", dir,
			 strerror(errno));
		return -1;
	}
	uint64_t *numbers = list_segments(&count);
	if (read_all(&r, numbers, &count, error, error_size) < 0) {
		free(numbers);
		free_reading(&r);
		return -1;
	}
	buf_init(&base);
	batch_start(&base);
	restore(&r, replay, &base);
	j.segment = count ? numbers[count - 1] + 2 : 2;
	j.fd = create_segment(j.segment, true, &base);
	j.good_size = segment_size(&base);
	buf_free(&base);
	free_reading(&r);
	if (j.fd < 0) {
		snprintf(error, error_size, "cannot write the journal in %s", dir);
		free(numbers);
		return -1;
	}
	for (size_t i = 0; i < count; i++)       /* superseded by the base segment */
		delete_segment(numbers[i]);
	free(numbers);
	batch_start(&j.pending);
	j.enabled = true;
	return 0;
}

void journal_close(void)
{
	if (!j.enabled)
		return;
	struct waiter me = { .end = UINT64_MAX };
	pthread_mutex_lock(&j.lock);
	take_turn(&me);
	write_pending();
	finish_turn();
	close(j.fd);
	j.fd = -1;
	j.enabled = false;
	buf_free(&j.pending);
	buf_free(&j.writing_buf);
	free(j.dir);
	j.dir = NULL;
}
