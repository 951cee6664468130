/*
 * snapshot.c: the snapshot's records (see snapshot.h).
 *
 *   'P' n:u16 table:s1 time:s1 complete:u8     a period, numbered n
 *   'T' n:u16 key:s1 totals:4*u64              a key's database totals
 *   'N' n:u16 key:s1                           a key whose totals are not known
 *   'Q' n:u16 sql:s4 mapped:u8                 an SqlUserConfig query
 *   'U' n:u16 key:s1 count:u32 values...       a user config (count ~0: none);
 *       each value: name:s2 kind:u8 text:s4
 *
 * (sN: a string with an N-byte length; record.h.)  Only periods of tables
 * a Quota reads, and that are live, are written.  No state of its own: the
 * encoder's numbering lives for one call, the reader's in its struct.
 */
#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "log.h"
#include "record.h"
#include "snapshot.h"
#include "tables.h"
#include "usercache.h"

#define NO_CONFIG UINT32_MAX
#define MAX_PERIOD_IDS 65536

struct encoding {
	struct buf *out;
	int *numbers;              /* period id -> its number here, or -1 */
	int period_count;
	const char *queries[64];   /* number -> sql_query text (the cache's own string) */
	int query_count;
	size_t keys;
};

static void put_u16(struct buf *b, int n)
{
	uint16_t v = (uint16_t)n;

	record_put(b, &v, 2);
}

/* The period's number here, writing its 'P' record first if needed; -1
 * for periods a snapshot leaves out. */
static int period_number(struct encoding *e, int period)
{
	size_t len;

	if (e->numbers[period] >= 0)
		return e->numbers[period];
	int table = periods_table(period);
	if (!tables_is_read(table) || !periods_is_live(period))
		return -1;
	const char *name = tables_name(table), *time = periods_time(period, &len);
	uint8_t complete = periods_is_complete(period);
	e->numbers[period] = e->period_count++;
	record_put(e->out, "P", 1);
	put_u16(e->out, e->numbers[period]);
	record_put_string(e->out, 1, name, strlen(name));
	record_put_string(e->out, 1, time, len);
	record_put(e->out, &complete, 1);
	return e->numbers[period];
}

static void encode_key(int period, const char *key, size_t key_len,
		       const struct metric_values *flushed, void *arg)
{
	struct encoding *e = arg;
	int n = period_number(e, period);

	if (n < 0)
		return;
	record_put(e->out, flushed ? "T" : "N", 1);
	put_u16(e->out, n);
	record_put_string(e->out, 1, key, key_len);
	if (flushed)
		record_put(e->out, flushed->v, sizeof(flushed->v));
	e->keys++;
}

static void encode_query(const char *sql, bool mapped, void *arg)
{
	struct encoding *e = arg;
	uint8_t whole = mapped;

	if (e->query_count == 64)
		return;
	e->queries[e->query_count] = sql;
	record_put(e->out, "Q", 1);
	put_u16(e->out, e->query_count++);
	record_put_string(e->out, 4, sql, strlen(sql));
	record_put(e->out, &whole, 1);
}

static void encode_config(const char *sql, const char *key, size_t key_len,
			  const struct session *values, void *arg)
{
	struct encoding *e = arg;
	int n = 0;

	while (n < e->query_count && e->queries[n] != sql)
		n++;
	if (n == e->query_count)
		return;
	uint32_t count = values ? (uint32_t)values->count : NO_CONFIG;
	record_put(e->out, "U", 1);
	put_u16(e->out, n);
	record_put_string(e->out, 1, key, key_len);
	record_put(e->out, &count, 4);
	for (size_t i = 0; values && i < values->count; i++) {
		const struct session_value *v = &values->values[i];
		const char *name = values->strings.data + v->name;
		uint8_t kind = (uint8_t)v->kind;
		record_put_string(e->out, 2, name, strlen(name));
		record_put(e->out, &kind, 1);
		record_put_string(e->out, 4, values->strings.data + v->text, v->text_len);
	}
}

size_t snapshot_encode(struct buf *out)
{
	struct encoding e = { .out = out };

	e.numbers = xcalloc(MAX_PERIOD_IDS, sizeof(int));
	memset(e.numbers, -1, MAX_PERIOD_IDS * sizeof(int));
	counters_for_each_key(encode_key, &e);
	usercache_for_each_query(encode_query, &e);
	usercache_for_each_known(encode_config, &e);
	free(e.numbers);
	return e.keys;
}

/* ----------------------------------------------------------------- reading */

bool snapshot_has_type(char type)
{
	return strchr("PTNQU", type) != NULL && type != '\0';
}

static bool get_u16(const char **p, const char *end, int *n)
{
	uint16_t v;

	if (!record_get(p, end, &v, 2))
		return false;
	*n = v;
	return true;
}

static bool decode_period(struct snapshot_reader *r, const char **p, const char *end)
{
	const char *table, *time;
	size_t table_len, time_len;
	uint8_t complete;
	char name[256];
	int n;

	if (!get_u16(p, end, &n) || !record_get_string(p, end, 1, &table, &table_len) ||
	    !record_get_string(p, end, 1, &time, &time_len) || !record_get(p, end, &complete, 1))
		return false;
	memcpy(name, table, table_len);
	name[table_len] = '\0';
	int id = tables_register(name);
	int period = id < 0 ? -1 : periods_get(id, time, time_len);
	if ((size_t)n >= r->period_count) {
		r->periods = xrealloc(r->periods, (size_t)(n + 1) * sizeof(int));
		for (size_t i = r->period_count; i <= (size_t)n; i++)
			r->periods[i] = -1;
		r->period_count = (size_t)n + 1;
	}
	r->periods[n] = period;
	if (period >= 0 && complete)
		periods_set_complete(period);
	return true;
}

static bool decode_key(struct snapshot_reader *r, bool known, const char **p, const char *end)
{
	struct metric_values totals;
	const char *key;
	size_t key_len;
	int n;

	if (!get_u16(p, end, &n) || !record_get_string(p, end, 1, &key, &key_len) ||
	    (known && !record_get(p, end, totals.v, sizeof(totals.v))) ||
	    (size_t)n >= r->period_count)
		return false;
	if (r->periods[n] >= 0 && key_len > 0) {
		counters_restore(r->periods[n], key, key_len, known ? &totals : NULL);
		r->keys++;
	}
	return true;
}

static bool decode_query(struct snapshot_reader *r, const char **p, const char *end)
{
	const char *sql;
	size_t len;
	uint8_t mapped;
	int n;

	if (!get_u16(p, end, &n) || !record_get_string(p, end, 4, &sql, &len) ||
	    !record_get(p, end, &mapped, 1) || (size_t)n != r->query_count)
		return false;
	r->queries = xrealloc(r->queries, (r->query_count + 1) * sizeof(char *));
	r->queries[r->query_count++] = xstrndup(sql, len);
	if (mapped)
		usercache_restore_mapped(r->queries[n]);
	return true;
}

/* Reads `count` values into `values`. */
static bool decode_values(struct session *values, uint32_t count, const char **p,
			  const char *end)
{
	for (uint32_t i = 0; i < count; i++) {
		const char *name, *text;
		size_t name_len, text_len;
		uint8_t kind;
		if (!record_get_string(p, end, 2, &name, &name_len) || !record_get(p, end, &kind, 1) ||
		    !record_get_string(p, end, 4, &text, &text_len) || kind > SESSION_OTHER)
			return false;
		session_set(values, name, name_len, (enum session_kind)kind, text, text_len);
	}
	return true;
}

static bool decode_config(struct snapshot_reader *r, const char **p, const char *end)
{
	struct session values;
	const char *key;
	size_t key_len;
	uint32_t count;
	int n;

	if (!get_u16(p, end, &n) || !record_get_string(p, end, 1, &key, &key_len) ||
	    !record_get(p, end, &count, 4) || (size_t)n >= r->query_count)
		return false;
	session_init(&values);
	bool ok = count == NO_CONFIG || decode_values(&values, count, p, end);
	if (ok) {
		usercache_restore(r->queries[n], key, key_len, count == NO_CONFIG ? NULL : &values);
		r->configs++;
	}
	session_free(&values);
	return ok;
}

bool snapshot_decode(struct snapshot_reader *r, char type, const char **p, const char *end)
{
	switch (type) {
	case 'P': return decode_period(r, p, end);
	case 'T': return decode_key(r, true, p, end);
	case 'N': return decode_key(r, false, p, end);
	case 'Q': return decode_query(r, p, end);
	case 'U': return decode_config(r, p, end);
	default: return false;
	}
}

void snapshot_reader_free(struct snapshot_reader *r)
{
	for (size_t i = 0; i < r->query_count; i++)
		free(r->queries[i]);
	free(r->queries);
	free(r->periods);
	memset(r, 0, sizeof(*r));
}
