/*
 * session.c: session values and the uc_ override rules (see session.h).
 * A session is owned by one thread; no locking.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "session.h"

void session_init(struct session *s)
{
	buf_init(&s->strings);
	s->values = NULL;
	s->count = s->cap = 0;
}

void session_free(struct session *s)
{
	buf_free(&s->strings);
	free(s->values);
	session_init(s);
}

void session_clear(struct session *s)
{
	buf_reset(&s->strings);
	s->count = 0;
}

static const char *string_at(const struct session *s, size_t offset)
{
	return s->strings.data + offset;
}

static struct session_value *find(const struct session *s, const char *name, size_t name_len)
{
	for (size_t i = 0; i < s->count; i++) {
		const char *n = string_at(s, s->values[i].name);
		if (strncmp(n, name, name_len) == 0 && n[name_len] == '\0')
			return &s->values[i];
	}
	return NULL;
}

static size_t add_string(struct session *s, const char *text, size_t len)
{
	size_t offset = s->strings.len;

	buf_append(&s->strings, text, len);
	buf_append(&s->strings, "", 1);
	return offset;
}

void session_set(struct session *s, const char *name, size_t name_len,
		 enum session_kind kind, const char *text, size_t text_len)
{
	struct session_value *v = find(s, name, name_len);

	if (v == NULL) {
		if (s->count == s->cap) {
			s->cap = s->cap ? s->cap * 2 : 8;
			s->values = xrealloc(s->values, s->cap * sizeof(*s->values));
		}
		v = &s->values[s->count++];
		v->name = add_string(s, name, name_len);
	}
	v->kind = kind;
	v->text = add_string(s, text, text_len);
	v->text_len = text_len;
}

void session_merge(struct session *to, const struct session *from)
{
	if (to->count == 0 && to->strings.len == 0 && from->count > 0) {
		/* into an empty session (SqlUserConfig usually comes first):
		 * the values keep their offsets, so both arrays copy whole */
		buf_append(&to->strings, from->strings.data, from->strings.len);
		if (to->cap < from->count) {
			to->cap = from->count;
			to->values = xrealloc(to->values, to->cap * sizeof(*to->values));
		}
		memcpy(to->values, from->values, from->count * sizeof(*from->values));
		to->count = from->count;
		return;
	}
	for (size_t i = 0; i < from->count; i++) {
		const struct session_value *v = &from->values[i];
		const char *name = string_at(from, v->name);
		session_set(to, name, strlen(name), v->kind, string_at(from, v->text), v->text_len);
	}
}

bool session_get(const struct session *s, const char *name, struct session_view *out)
{
	const struct session_value *v = find(s, name, strlen(name));

	if (v == NULL)
		return false;
	out->kind = v->kind;
	out->text = string_at(s, v->text);
	out->len = v->text_len;
	return true;
}

/* A user config with an unusable value would otherwise log per request. */
static _Atomic long long last_complaint;

/* The session value that overrides an option, if there is one. */
static bool override(const struct session *s, const char *uc, struct session_view *v)
{
	return uc != NULL && session_get(s, uc, v) && v->kind != SESSION_NULL;
}

bool session_uc_switch(const struct session *s, const char *uc, bool configured)
{
	struct session_view v;

	if (!override(s, uc, &v))
		return configured;
	/* mtpolicyd's `eq 'off'`: a JSON false is "0" there, which leaves it on */
	return !(v.kind == SESSION_STRING && strcmp(v.text, "off") == 0);
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Only what a JSON number or a plain integer can contain: strtod() alone
 * would also take hex, "inf" and "nan". */
static bool is_decimal(const char *text, size_t len, bool *integral)
{
	size_t i = (text[0] == '-' || text[0] == '+') ? 1 : 0;
	bool digits = false;

	*integral = true;
	for (; i < len; i++) {
		char c = text[i];
		if (c >= '0' && c <= '9')
			digits = true;
		else if (c == '.' || c == 'e' || c == 'E' || ((c == '-' || c == '+') &&
			 (text[i - 1] == 'e' || text[i - 1] == 'E')))
			*integral = false;
		else
			return false;
	}
	return digits;
}

/* The common case: up to 18 plain digits, which cannot overflow. */
static bool parse_small(const char *text, size_t len, int64_t *out)
{
	int64_t n = 0;

	if (len == 0 || len > 18)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (text[i] < '0' || text[i] > '9')
			return false;
		n = n * 10 + (text[i] - '0');
	}
	*out = n;
	return true;
}

bool session_parse_number(const char *text, size_t len, int64_t *out)
{
	bool integral;

	while (len > 0 && is_space(*text))
		text++, len--;
	while (len > 0 && is_space(text[len - 1]))
		len--;
	if (parse_small(text, len, out))
		return true;
	if (len == 0 || !is_decimal(text, len, &integral))
		return false;

	char copy[64], *end;
	if (len >= sizeof(copy)) {
		/* only a huge integer is this long: it saturates */
		*out = text[0] == '-' ? INT64_MIN : INT64_MAX;
		return integral;
	}
	memcpy(copy, text, len);
	copy[len] = '\0';

	if (integral) {
		*out = strtoll(copy, &end, 10);   /* saturates on overflow */
		return *end == '\0';
	}
	double d = ceil(strtod(copy, &end));
	if (*end != '\0' || isnan(d))
		return false;
	if (d >= 9.2233720368547758e18)
		*out = INT64_MAX;
	else if (d <= -9.2233720368547758e18)
		*out = INT64_MIN;
	else
		*out = (int64_t)d;
	return true;
}

int64_t session_uc_number(const struct session *s, const char *uc, int64_t configured,
			  const char *plugin)
{
	struct session_view v;
	int64_t n;

	if (!override(s, uc, &v))
		return configured;
	if ((v.kind == SESSION_STRING || v.kind == SESSION_NUMBER) &&
	    session_parse_number(v.text, v.len, &n))
		return n;
	if (log_ratelimit(&last_complaint, 10))
		log_warning("plugin %s: session value %s is not a number, using the configured "
			    "%lld", plugin, uc, (long long)configured);
	return configured;
}

const char *session_uc_text(const struct session *s, const char *uc, const char *configured,
			    bool (*valid)(const char *), const char *plugin, const char *option)
{
	struct session_view v;

	if (!override(s, uc, &v))
		return configured;
	if (v.kind == SESSION_STRING && v.len > 0 && strlen(v.text) == v.len &&
	    (valid == NULL || valid(v.text)))
		return v.text;
	if (log_ratelimit(&last_complaint, 10))
		log_warning("plugin %s: session value %s is not a usable %s, using the configured "
			    "'%s'", plugin, uc, option, configured);
	return configured;
}
