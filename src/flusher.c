/*
 * flusher.c: the write-behind thread (see flusher.h).
 *
 * `struct flusher` belongs to the flusher thread alone: its database
 * connection, the batch of keys in flight and its sequence numbers.  The
 * control block (stop flag, the one request being served for tallyctl,
 * the status it reports) is shared with the main and admin threads and
 * guarded by control_lock; the database is never used with it held.
 *
 * After each commit the flusher applies the totals it read back to the
 * counter cache under a new flush epoch (counters.h) and wakes the
 * requests parked for them (park.h).
 *
 * Exactly once: each flush transaction also writes this instance's next
 * sequence number to tallyd_flushes.  When the connection dies during
 * COMMIT the outcome is unknown; before taking any new increments the
 * flusher reads the sequence number back with a locking read (which waits
 * for a COMMIT still running on the old connection) and learns whether the
 * batch is in the database.  Only then are new increments added to it.
 *
 * A row the database refuses (a data error) is set aside: the chunk is
 * written row by row in the same transaction, and after the commit the
 * refused keys' increments are pending (and journaled) again.  An SQL error
 * that is not about a row closes the connection, so that the next attempt
 * has a new session.  No flush starts before its intent is in the journal.
 *
 * Conflicts are not failures: when the database rolls the transaction back
 * because another writer of the same rows won (a Galera certification
 * failure or deadlock, a lock wait timeout) or the Galera node is not
 * ready, the flush runs again at once, up to CONFLICT_TRIES times, after a
 * short random pause (conflict.h); each is counted (flush_conflicts) and
 * logged at debug.  The schedule has ±25% jitter so that instances started
 * together do not keep meeting on the same rows.
 *
 * One writer per instance id: the flusher claims its row of tallyd_flushes
 * (identity.h) before its first flush on each connection, and the
 * sequence number moves only by compare-and-set in a row it owns; a row
 * another live tallyd owns stops this one's flushes (at start: tallyd
 * refuses to start), with its increments kept.  The lease is renewed by
 * every flush and, when idle, by housekeeping; a clean stop gives the row
 * up.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "conflict.h"
#include "counters.h"
#include "flusher.h"
#include "identity.h"
#include "journal.h"
#include "log.h"
#include "store.h"
#include "park.h"
#include "rowset.h"
#include "tables.h"
#include "usercache.h"

enum outcome { WRITTEN, NOT_WRITTEN, UNKNOWN, CONFLICTED };   /* conflicted: rolled back */
enum claim { CLAIMED, NOT_CLAIMED, CLAIM_REFUSED };   /* refused: another live owner */
enum ensured { TABLES_THERE, TABLES_REFUSED, TABLES_LOST };   /* lost: the connection */

#define HOUSEKEEPING_MS 5000     /* evicting past periods, sweeping user configs */

struct flusher {
	const struct config *config;
	struct store_link link;         /* the connection, reopened when lost */
	struct store *store;            /* link.store, when connected */
	bool ensured_sequence;          /* tallyd_flushes is there (made sure once) */
	bool ensured[TABLES_MAX];       /* table i is there (made sure once) */
	int64_t last_table_complaint;   /* ms; a table that cannot be made: once a minute */
	struct counter_batch batch;     /* keys in flight: written, or to retry */
	struct rowset written;          /* the batch as rows, sorted */
	struct rowset read_back;        /* the rows of it whose totals are read back */
	uint64_t last_seq;              /* last sequence number known committed */
	bool seq_known;                 /* ... and the row is this process's */
	int64_t renewed;                /* ms; when the lease was last renewed */
	char refusal[600];              /* why the row is not this process's */
	uint32_t last_take;             /* counters_take_pending() number of the batch */
	uint64_t unknown_seq;           /* a COMMIT of unknown outcome, or 0 ... */
	uint32_t unknown_take;          /* ... and the take it carried */
	int64_t last_complaint;         /* ms; failed flushes are logged once a minute */
	int64_t next_snapshot;          /* ms; 0: at the first chance */
	struct conflict_retry retry;    /* the pauses after a conflict; the schedule's jitter */
	int64_t last_conflict_notice;   /* ms; conflicts that outlast the retries: once a minute */
};

static struct flusher flusher;
static pthread_t thread;
static bool running;            /* main thread: set by flusher_start, cleared by _stop */
/* Held while the flusher opens or closes its connection, and while
 * flusher_stop() cuts off a statement the database does not answer, so
 * that it never touches a connection being freed. */
static pthread_mutex_t link_lock = PTHREAD_MUTEX_INITIALIZER;

/* A flush (and reset) asked for by tallyctl. */
struct admin_request {
	bool reset;
	int period;
	struct store_row row;
	int result;
	bool done;
};

static pthread_mutex_t control_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t control_changed;          /* guarded by control_lock: */
static bool stopping;
static int64_t give_up_at;                      /* ms: the stop's last flush attempt */
static struct admin_request *request;           /* waiting or being served */
static struct flusher_status shared_status;

/* Records a failure for tallyctl stats. */
static void note_failure(const char *what, const char *why)
{
	pthread_mutex_lock(&control_lock);
	shared_status.failures++;
	/* truncating a long driver message is fine here */
	int n = snprintf(shared_status.last_error, sizeof(shared_status.last_error), "%.60s: %.512s",
			 what, why);
	(void)n;
	pthread_mutex_unlock(&control_lock);
}

/* Records a failure and logs it at once, then once a minute while they go on. */
static void complain(struct flusher *f, const char *what, const char *why)
{
	int64_t now = clock_ms();

	note_failure(what, why);
	if (store_is_down())
		return;                      /* the outage is logged already, once */
	if (now - f->last_complaint >= 60000) {
		log_error("%s failed: %s; the increments are kept and retried", what, why);
		f->last_complaint = now;
	}
}

/* Counts a row the database refused, and logs it once a minute (a client
 * can make one every flush). */
static void note_refused(const char *table, const struct store_row *row, const char *why)
{
	static int64_t last_logged;
	int64_t now = clock_ms();

	pthread_mutex_lock(&control_lock);
	shared_status.rows_refused++;
	pthread_mutex_unlock(&control_lock);
	if (now - last_logged < 60000)
		return;
	last_logged = now;
	log_warning("the database refused the row of %.*s in %s (%.*s): %s; its increments are "
		    "kept and tried again at each flush, the other rows are written (tallyctl "
		    "stats: flush_rows_refused)", (int)row->key_len, row->key, table,
		    (int)row->time_len, row->time, why);
}

/* Counts a transaction that a conflict rolled back.  Another writer of
 * the same rows is normal on a Galera cluster: no failure. */
static void note_conflict(void)
{
	pthread_mutex_lock(&control_lock);
	shared_status.conflicts++;
	pthread_mutex_unlock(&control_lock);
}

/* A flush whose transaction lost CONFLICT_TRIES conflicts in a row: it
 * counts as a failed flush and waits for the next one, noticed once a
 * minute. */
static void conflicts_outlasted(struct flusher *f, uint64_t seq, const char *why)
{
	int64_t now = clock_ms();

	note_failure("writing the accounting increments", why);
	if (now - f->last_conflict_notice < 60000)
		return;
	f->last_conflict_notice = now;
	log_notice("flush %llu lost %d conflicts in a row with other writers of the same rows "
		   "(%s); the increments are kept and written by the next flush (tallyctl stats: "
		   "flush_conflicts)", (unsigned long long)seq, CONFLICT_TRIES, why);
}

/* ------------------------------------------------------------- connection */

/* Makes sure, once per process, that tallyd_flushes and the accounting
 * tables are there: at start, or at the first connection after it when
 * the database was away, and later for the tables a reload (or a journal)
 * adds.  A table that exists is only read; a missing one is created (DDL,
 * outside any transaction).  A reconnect runs nothing here: on Galera DDL
 * is a statement the whole cluster runs in turn.  TABLES_REFUSED when one
 * cannot be used or made, with the reason in `why` (and logged, at most
 * once a minute, unless `at_start`: the caller says it); TABLES_LOST when
 * the connection broke meanwhile, or a Galera node is not ready (1047) or
 * a conflict got in the way (an outage: tried again on the next). */
static enum ensured ensure_tables(struct flusher *f, bool at_start, char *why, size_t size)
{
	struct store *s = f->store;
	bool missing, ok = true;
	int count = tables_count();

	if (!f->ensured_sequence) {
		enum store_status status = s->ops->ensure_sequence_table(s, false, &missing);
		f->ensured_sequence = status == STORE_OK;
		if (status == STORE_LOST || status == STORE_RETRY)
			return TABLES_LOST;
		if (status != STORE_OK) {
			snprintf(why, size, "%.500s", s->error);
			ok = false;
		}
	}
	for (int i = 0; i < count && i < TABLES_MAX; i++) {
		if (f->ensured[i])
			continue;
		const char *table = tables_name(i);
		enum store_status status = s->ops->ensure_table(s, table, false, &missing);
		f->ensured[i] = status == STORE_OK;
		if (status == STORE_OK && missing)
			log_notice("created accounting table %s", table);
		if (status == STORE_LOST || status == STORE_RETRY)
			return TABLES_LOST;
		if (status != STORE_OK && ok)
			snprintf(why, size, "%.500s", s->error);
		if (status != STORE_OK)
			ok = false;
	}
	if (ok)
		return TABLES_THERE;
	size_t used = strlen(why);
	snprintf(why + used, size - used, "; tallyd needs SELECT, INSERT and UPDATE on its tables, "
		 "CREATE while one is missing, and the columns of schema.mysql.sql");
	int64_t now = clock_ms();
	if (!at_start && now - f->last_table_complaint >= 60000) {
		log_error("%s; the increments are kept and retried", why);
		f->last_table_complaint = now;
	}
	return TABLES_REFUSED;
}

static void lost(struct flusher *f, const char *what);

/* After ensure_tables(): false when the connection is gone (closed now). */
static bool made_sure(struct flusher *f, enum ensured result, const char *why)
{
	if (result == TABLES_REFUSED)
		note_failure("making sure of the tables", why);
	if (result != TABLES_LOST)
		return true;
	lost(f, "making sure of the tables");
	return false;
}

/* A connection, with the flusher's tables made sure of; false while the
 * database is away. */
static bool connect_store(struct flusher *f)
{
	char why[512];

	pthread_mutex_lock(&link_lock);
	f->store = store_link_open(&f->link);
	pthread_mutex_unlock(&link_lock);
	if (f->link.just_failed)
		note_failure("connecting to the database", f->link.failure.text);
	if (f->store == NULL || !f->link.just_opened)
		return f->store != NULL;
	return made_sure(f, ensure_tables(f, false, why, sizeof(why)), why);
}

/* Closes a connection that reported STORE_LOST (a restart, a KILL, an
 * outage: which one, the next connection attempt tells). */
static void lost(struct flusher *f, const char *what)
{
	pthread_mutex_lock(&link_lock);
	store_link_lost(&f->link, "flusher", what);
	pthread_mutex_unlock(&link_lock);
	f->store = NULL;
}

/* After an SQL error that left the connection usable: closes it anyway,
 * so that the next attempt starts a new session.  MariaDB keeps a
 * session's database privileges from its start: after a REVOKE and GRANT,
 * only a new session has them back. */
static void new_session_next_time(struct flusher *f)
{
	f->store->ops->rollback(f->store);
	pthread_mutex_lock(&link_lock);
	store_link_close(&f->link);
	pthread_mutex_unlock(&link_lock);
	f->store = NULL;
}

/* ------------------------------------------------------------------ batches */

/* Writes rows; when the database refuses one (a data error), writes them
 * one by one, so that it holds back no other: the refused ones are set
 * aside (rows[i].refused) and go back to pending after the commit. */
static enum store_status upsert_rows(struct store *s, const char *table, struct store_row *rows,
				     size_t count)
{
	enum store_status status = s->ops->upsert(s, table, rows, count);

	if (status != STORE_REFUSED)
		return status;
	for (size_t i = 0; i < count; i++) {
		status = count > 1 ? s->ops->upsert(s, table, &rows[i], 1) : STORE_REFUSED;
		if (status == STORE_REFUSED) {
			rows[i].refused = true;
			note_refused(table, &rows[i], s->error);
		} else if (status != STORE_OK) {
			return status;
		}
	}
	return STORE_OK;
}

static enum store_status each_chunk(struct flusher *f, struct rowset *r, rowset_op op)
{
	size_t done;

	return rowset_each_chunk(r, f->store, (size_t)f->config->accounting.flush_batch, op, &done);
}

/* ------------------------------------------------------------------ flushes */

/* One transaction: upserts, the new totals of the keys a Quota reads (so
 * that other instances' increments show), sequence number, COMMIT. */
static enum outcome write_batch(struct flusher *f, uint64_t seq)
{
	struct store *s = f->store;
	enum store_status status = s->ops->begin(s);

	if (status == STORE_OK)
		status = each_chunk(f, &f->written, upsert_rows);
	if (status == STORE_OK)
		status = each_chunk(f, &f->read_back, s->ops->select);
	if (status == STORE_OK)
		status = s->ops->write_sequence(s, identity_instance(), identity_owner(),
						f->last_seq, seq);
	if (status == STORE_OK) {
		status = s->ops->commit(s);
		if (status == STORE_LOST) {
			lost(f, "COMMIT");
			return UNKNOWN;
		}
	}
	if (status == STORE_OK)
		return WRITTEN;
	if (status == STORE_RETRY) {         /* rolled back, at whatever stage */
		s->ops->rollback(s);
		return CONFLICTED;
	}
	if (status == STORE_CONFLICT)
		f->seq_known = false;        /* claimed again before the next try */
	complain(f, "writing the accounting increments", s->error);
	if (status == STORE_LOST)
		lost(f, "flush");
	else
		new_session_next_time(f);
	return NOT_WRITTEN;
}

/* After the commit of a batch with refused rows: their increments are
 * pending again, and journaled again (the commit's marker is about to say
 * their old records are written). */
static void requeue_refused(struct flusher *f)
{
	bool any = false;

	for (size_t i = 0; i < f->written.count; i++) {
		const struct store_row *row = &f->written.rows[i];
		if (!row->refused)
			continue;
		struct counter_view v;
		counter_view(f->written.keys[i], &v);
		struct metric_values values = row->values;
		uint32_t take = counters_refused(f->written.keys[i]);
		journal_record(take, v.period, v.key, v.key_len, &values);
		any = true;
	}
	if (any)
		journal_wait();
}

/* The batch is in the database: hand the totals read back to the cache
 * (the others grow by what was in flight), and wake the requests that
 * waited for any of them.  Refused rows were requeued already. */
static void batch_written(struct flusher *f, bool with_totals)
{
	uint32_t epoch = counters_next_epoch();
	size_t j = 0;

	for (size_t i = 0; i < f->written.count; i++) {
		const struct store_row *total = NULL;
		if (j < f->read_back.count && f->read_back.keys[j] == f->written.keys[i]) {
			if (f->read_back.rows[j].found)
				total = &f->read_back.rows[j];
			j++;
		}
		if (f->written.rows[i].refused)
			continue;
		counters_committed(f->written.keys[i], with_totals && total ? &total->values : NULL,
				   epoch);
	}
	f->batch.count = f->written.count = f->read_back.count = 0;
	park_wake();
}

/* After a failed statement on the sequence row: false.  A conflict is
 * counted and the next flush tries again on the same connection. */
static bool sequence_failed(struct flusher *f, enum store_status status, const char *what)
{
	if (status == STORE_LOST) {
		lost(f, what);
		return false;
	}
	if (status == STORE_RETRY) {
		f->store->ops->rollback(f->store);
		note_conflict();
		log_debug("flusher: %s: rolled back by a conflict with another writer (%s); "
			  "the next flush runs it again", what, f->store->error);
		return false;
	}
	complain(f, what, f->store->error);
	new_session_next_time(f);
	return false;
}

/* Reads the instance's row: which flushes are committed, and its owner.
 * The transaction stays open (the row locked) when true. */
static bool read_sequence(struct flusher *f, struct store_sequence *row)
{
	struct store *s = f->store;
	enum store_status status = s->ops->begin(s);

	if (status == STORE_OK)
		status = s->ops->read_sequence(s, identity_instance(), row);
	return status == STORE_OK || sequence_failed(f, status, "reading the flush sequence");
}

/* Takes the instance's row for this process and learns its sequence
 * number. */
static enum claim claim(struct flusher *f)
{
	struct store_sequence row;
	struct store *s = f->store;

	if (!read_sequence(f, &row))
		return NOT_CLAIMED;
	if (row.found && !identity_may_take(row.owner, row.age)) {
		s->ops->rollback(s);
		snprintf(f->refusal, sizeof(f->refusal), "instance_id \"%s\" is in use by "
			 "another tallyd (%s, alive %llds ago); every tallyd that shares a database "
			 "needs its own instance_id", identity_instance(), row.owner,
			 (long long)row.age);
		return CLAIM_REFUSED;
	}
	enum store_status status = s->ops->set_owner(s, identity_instance(), NULL,
						     identity_owner());
	if (status == STORE_OK)
		status = s->ops->commit(s);
	if (status != STORE_OK) {
		sequence_failed(f, status, "claiming the instance");
		return NOT_CLAIMED;
	}
	f->last_seq = row.seq;
	f->seq_known = true;
	f->renewed = clock_ms();
	return CLAIMED;
}

/* Hands the row to `next` (this process again: renews the lease; "": gives
 * it up at a clean stop). */
static void pass_row(struct flusher *f, const char *next)
{
	if (!f->seq_known || f->store == NULL)
		return;
	enum store_status status = f->store->ops->set_owner(f->store, identity_instance(),
							    identity_owner(), next);
	if (status == STORE_OK) {
		f->renewed = clock_ms();
		return;
	}
	if (status == STORE_CONFLICT)
		f->seq_known = false;
	if (next[0] == '\0') {               /* stopping: nothing is retried */
		log_warning("freeing instance %s's row at stop failed: %s; a start on this host "
			    "takes it back at once, another after its %d s lease", identity_instance(),
			    status == STORE_CONFLICT ? "another process holds it" : f->store->error,
			    IDENTITY_LEASE);
		return;
	}
	sequence_failed(f, status, "renewing the instance's lease");
}

/* Records a committed flush for tallyctl stats. */
static void note_flushed(uint64_t seq, size_t keys, int64_t took)
{
	pthread_mutex_lock(&control_lock);
	shared_status.flushes++;
	shared_status.last_seq = seq;
	shared_status.last_flush = (int64_t)time(NULL);
	shared_status.last_duration = (double)took / 1000.0;
	shared_status.last_keys = keys;
	shared_status.last_error[0] = '\0';
	pthread_mutex_unlock(&control_lock);
}

/* After a COMMIT of unknown outcome: was that batch written? */
static bool resolve_unknown(struct flusher *f)
{
	struct store_sequence row;

	if (!read_sequence(f, &row))
		return false;
	f->store->ops->rollback(f->store);
	uint64_t seq = row.seq;
	if (seq >= f->unknown_seq) {
		log_notice("flush %llu was committed before the connection broke",
			   (unsigned long long)f->unknown_seq);
		if (f->written.count != f->batch.count) {      /* replayed from the journal */
			rowset_fill(&f->written, &f->batch, true);
			f->read_back.count = 0;
		}
		note_flushed(f->unknown_seq, f->batch.count, 0);
		requeue_refused(f);
		journal_committed(f->unknown_seq, f->unknown_take);
		batch_written(f, false);
	} else {
		log_notice("flush %llu was not committed; writing it again",
			   (unsigned long long)f->unknown_seq);
	}
	f->last_seq = seq;
	f->unknown_seq = 0;
	return true;
}

/* After a commit, or a take that found nothing: everything taken is in
 * the database, so the journal can take a snapshot (when one is due, or
 * `now`). */
static void snapshot(struct flusher *f, bool now)
{
	int64_t started = clock_ms();

	if (!journal_enabled() || (!now && started < f->next_snapshot))
		return;
	if (!journal_snapshot(f->last_seq, f->last_take))
		return;
	f->next_snapshot = started + (int64_t)(f->config->accounting.snapshot_interval * 1000);
	log_debug("journal snapshot after flush %llu in %lld ms",
		  (unsigned long long)f->last_seq, (long long)(clock_ms() - started));
}

/* One flush; true when nothing is left in flight. */
static bool flush(struct flusher *f)
{
	if (!connect_store(f))
		return false;
	enum claim claimed = f->seq_known ? CLAIMED : claim(f);
	if (claimed == CLAIM_REFUSED)
		complain(f, "claiming the instance", f->refusal);
	if (claimed != CLAIMED)
		return false;
	if (f->unknown_seq && !resolve_unknown(f))
		return false;
	journal_rotate();
	f->last_take = counters_take_pending(&f->batch);
	if (f->batch.count == 0) {
		snapshot(f, false);
		return true;
	}
	char why[512];
	if (!made_sure(f, ensure_tables(f, false, why, sizeof(why)), why))
		return false;
	rowset_fill(&f->written, &f->batch, true);
	rowset_pick(&f->read_back, &f->written, counters_wants_read_back);

	int64_t started = clock_ms();
	uint64_t seq = f->last_seq + 1;
	if (!journal_intent(seq, f->last_take)) {
		note_failure("writing the flush's intent to the journal", "the disk refused it");
		return false;
	}
	enum outcome outcome = write_batch(f, seq);
	for (int attempt = 1; outcome == CONFLICTED; attempt++) {
		note_conflict();
		if (!conflict_retry(&f->retry, "flusher", "writing the accounting increments",
				    f->store->error, attempt)) {
			conflicts_outlasted(f, seq, f->store->error);
			return false;
		}
		for (size_t i = 0; i < f->written.count; i++)
			f->written.rows[i].refused = false;
		outcome = write_batch(f, seq);
	}
	if (outcome == UNKNOWN) {
		f->unknown_seq = seq;
		f->unknown_take = f->last_take;
		return false;
	}
	if (outcome == NOT_WRITTEN)
		return false;
	int64_t took = clock_ms() - started;
	log_debug("flush %llu: %zu keys in %lld ms", (unsigned long long)seq, f->batch.count,
		  (long long)took);
	note_flushed(seq, f->batch.count, took);
	f->last_seq = seq;
	f->last_complaint = 0;
	f->renewed = clock_ms();
	requeue_refused(f);
	journal_committed(seq, f->last_take);
	batch_written(f, true);
	snapshot(f, false);
	return true;
}

/* tallyctl reset: after a flush, with nothing in flight. */
static int reset_row(struct flusher *f, struct admin_request *r)
{
	const char *table = tables_name(periods_table(r->period));
	enum store_status st = f->store->ops->reset_row(f->store, table, &r->row);

	if (st == STORE_LOST)
		lost(f, "reset");
	if (st != STORE_OK) {
		log_warning("reset of %.*s in %s failed", (int)r->row.key_len, r->row.key, table);
		return -1;
	}
	counters_reset(r->period, r->row.key, r->row.key_len);
	log_notice("reset %.*s %.*s in %s", (int)r->row.key_len, r->row.key,
		   (int)r->row.time_len, r->row.time, table);
	return 0;
}

/* ------------------------------------------------------------------ thread */

static void housekeeping(const struct config *config)
{
	static _Atomic long long last_notice;
	size_t evicted = counters_evict_stale();

	if (evicted)
		log_info("dropped %zu cached keys of past periods", evicted);
	size_t max = (size_t)config->accounting.cache_max_keys;
	evicted = counters_evict_over(max);
	if (evicted && log_ratelimit(&last_notice, 60))
		log_notice("cache_max_keys (%zu) reached: %zu keys with nothing to write left the "
			   "cache; their totals are read from the database when asked for", max,
			   evicted);
	periods_retire();
	usercache_sweep();
}

/* Waits on control_changed until `until` (ms); control_lock held. */
static void wait_until(int64_t until)
{
	struct timespec ts = { .tv_sec = until / 1000, .tv_nsec = (until % 1000) * 1000000 };

	pthread_cond_timedwait(&control_changed, &control_lock, &ts);
}

static void final_flush(struct flusher *f)
{
	struct counters_stats stats;
	bool flushed;

	pthread_mutex_lock(&control_lock);
	int64_t give_up = give_up_at;
	pthread_mutex_unlock(&control_lock);
	while (!(flushed = flush(f)) && clock_ms() < give_up) {
		pthread_mutex_lock(&control_lock);
		wait_until(clock_ms() + 250);          /* a retry pause, not a handshake */
		pthread_mutex_unlock(&control_lock);
	}
	if (flushed) {
		snapshot(f, true);              /* the next start knows what this one knew */
		pass_row(f, "");
	}
	counters_stats(&stats);
	size_t unwritten = f->batch.count + stats.dirty_keys;
	if (unwritten > 0 && journal_enabled())
		log_warning("stopping with the database unreachable: the increments of %zu keys "
			    "stay in the journal for the next start", unwritten);
	else if (unwritten > 0)
		log_error("stopping with the database unreachable: the increments of %zu keys "
			  "are lost (accounting.journal keeps them across restarts)", unwritten);
}

/* interval ±25%, the same on average. */
static int64_t jittered(struct flusher *f, int64_t interval)
{
	int64_t spread = interval / 2;

	if (spread <= 0)
		return interval;
	return interval - spread / 2 + (int64_t)(conflict_random(&f->retry) % (uint64_t)(spread + 1));
}

static void *flusher_main(void *arg)
{
	struct flusher *f = arg;
	int64_t interval = (int64_t)(f->config->accounting.flush_interval * 1000);
	int64_t next_flush = clock_ms() + jittered(f, interval), next_housekeeping = clock_ms() + HOUSEKEEPING_MS;

	pthread_mutex_lock(&control_lock);
	while (!stopping) {
		struct admin_request *serving = request && !request->done ? request : NULL;
		int64_t now = clock_ms();
		if (!serving && now < next_flush && now < next_housekeeping) {
			wait_until(next_flush < next_housekeeping ? next_flush : next_housekeeping);
			continue;
		}
		pthread_mutex_unlock(&control_lock);

		int result = 0;
		if (serving || now >= next_flush) {
			result = flush(f) ? 0 : -1;
			if (serving && serving->reset && result == 0)
				result = reset_row(f, serving);
			/* a fixed rate: a flush that took longer than the interval is
			 * followed at once by the next, instead of letting the next
			 * batch grow by the time this one took.  Jitter of ±25% keeps
			 * instances started together from writing in step (on
			 * Galera they would collide on shared rows every time). */
			next_flush += jittered(f, interval);
			if (next_flush < clock_ms())
				next_flush = clock_ms();
		}
		if (now >= next_housekeeping) {
			if (clock_ms() - f->renewed >= IDENTITY_LEASE * 1000 / 4)
				pass_row(f, identity_owner());
			housekeeping(f->config);
			next_housekeeping = clock_ms() + HOUSEKEEPING_MS;
		}

		pthread_mutex_lock(&control_lock);
		shared_status.in_flight_keys = f->batch.count;
		if (serving) {
			serving->result = result;
			serving->done = true;
			pthread_cond_broadcast(&control_changed);
		}
	}
	pthread_mutex_unlock(&control_lock);
	final_flush(f);
	return NULL;
}

int flusher_start(const struct config *config, struct journal_replay *replay)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&control_changed, &attr);
	pthread_condattr_destroy(&attr);
	memset(&flusher, 0, sizeof(flusher));
	memset(&shared_status, 0, sizeof(shared_status));
	flusher.config = config;
	conflict_retry_init(&flusher.retry);
	flusher.link.config = &config->database;
	flusher.link.statement_timeout = config->database.statement_timeout;
	if (replay) {            /* a flush of unknown outcome from the last run */
		flusher.batch = replay->in_flight;
		flusher.unknown_seq = replay->unknown_seq;
		memset(&replay->in_flight, 0, sizeof(replay->in_flight));
	}
	stopping = false;
	/* at start, tables that cannot be made, or a row another live tallyd
	 * holds, stop tallyd now; the thread opens its own connection */
	enum claim claimed = NOT_CLAIMED;
	enum ensured tables = TABLES_LOST;
	char why[512];
	if (!store_is_down()) {
		pthread_mutex_lock(&link_lock);
		flusher.store = store_link_open(&flusher.link);
		pthread_mutex_unlock(&link_lock);
	}
	if (flusher.store != NULL) {
		tables = ensure_tables(&flusher, true, why, sizeof(why));
		if (tables == TABLES_THERE)
			claimed = claim(&flusher);
	}
	store_link_close(&flusher.link);
	flusher.store = NULL;
	if (tables == TABLES_REFUSED) {
		log_error("refusing to start: %s", why);
		return -1;
	}
	if (claimed == CLAIM_REFUSED) {
		log_error("refusing to start: %s", flusher.refusal);
		return -1;
	}
	int rc = pthread_create(&thread, NULL, flusher_main, &flusher);
	if (rc != 0) {
		log_error("cannot start the flusher thread: %s", strerror(rc));
		return -1;
	}
	running = true;
	return 0;
}

/* Hands r to the flusher and waits for its result (requests one at a time). */
static int ask(struct admin_request *r)
{
	pthread_mutex_lock(&control_lock);
	while (request != NULL && !stopping)
		pthread_cond_wait(&control_changed, &control_lock);
	request = r;
	pthread_cond_broadcast(&control_changed);
	while (!r->done && !stopping)
		pthread_cond_wait(&control_changed, &control_lock);
	int result = r->done ? r->result : -1;
	request = NULL;
	pthread_cond_broadcast(&control_changed);
	pthread_mutex_unlock(&control_lock);
	return result;
}

int flusher_flush_now(void)
{
	struct admin_request r = { .reset = false };

	if (!running)
		return 0;                /* no store: nothing is ever waiting */
	return ask(&r);
}

int flusher_reset(int period, const char *key, size_t key_len)
{
	struct admin_request r = {
		.reset = true, .period = period,
		.row = { .key = key, .key_len = key_len },
	};

	if (!running)
		return -1;
	r.row.time = periods_time(period, &r.row.time_len);
	return ask(&r);
}

size_t flusher_keys_waiting(void)
{
	struct counters_stats stats;
	size_t in_flight;

	pthread_mutex_lock(&control_lock);
	in_flight = shared_status.in_flight_keys;
	pthread_mutex_unlock(&control_lock);
	counters_stats(&stats);
	size_t both = counters_pending_in_flight();
	size_t waiting = stats.dirty_keys + in_flight;
	return waiting > both ? waiting - both : stats.dirty_keys;
}

void flusher_status(struct flusher_status *out)
{
	pthread_mutex_lock(&control_lock);
	*out = shared_status;
	pthread_mutex_unlock(&control_lock);
}

/* Joins the thread; past `give_up` (ms), cuts off the statement it waits
 * for, which a hung database would hold for statement_timeout. */
static void join_by(int64_t give_up)
{
	struct timespec by;

	clock_gettime(CLOCK_REALTIME, &by);
	int64_t left = give_up - clock_ms() + 1000;
	by.tv_sec += left / 1000;
	by.tv_nsec += (left % 1000) * 1000000;
	if (by.tv_nsec >= 1000000000) {
		by.tv_sec++;
		by.tv_nsec -= 1000000000;
	}
	if (left > 0 && pthread_timedjoin_np(thread, NULL, &by) == 0)
		return;
	pthread_mutex_lock(&link_lock);
	if (flusher.link.store) {
		log_warning("stopping: the database has not answered the flusher for %d s; "
			    "cutting its statement off", 2 * flusher.config->database.connect_timeout);
		flusher.link.store->ops->interrupt(flusher.link.store);
	}
	pthread_mutex_unlock(&link_lock);
	pthread_join(thread, NULL);
}

void flusher_stop(void)
{
	if (!running)
		return;
	running = false;
	pthread_mutex_lock(&control_lock);
	stopping = true;
	give_up_at = clock_ms() + 2000LL * flusher.config->database.connect_timeout;
	int64_t give_up = give_up_at;
	pthread_cond_broadcast(&control_changed);
	pthread_mutex_unlock(&control_lock);
	join_by(give_up);
	store_link_close(&flusher.link);
	counter_batch_free(&flusher.batch);
	rowset_free(&flusher.written);
	rowset_free(&flusher.read_back);
	pthread_cond_destroy(&control_changed);
}
