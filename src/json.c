/*
 * json.c: JSON object → session values (see json.h), with yajl's tree
 * parser.  No shared state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "json.h"
#include "log.h"

/* Writes v back as compact JSON (numbers as written). */
static void generate(yajl_gen g, yajl_val v)
{
	if (YAJL_IS_STRING(v)) {
		const char *text = YAJL_GET_STRING(v) ? YAJL_GET_STRING(v) : "";
		yajl_gen_string(g, (const unsigned char *)text, strlen(text));
	} else if (YAJL_IS_NUMBER(v)) {
		const char *text = YAJL_GET_NUMBER(v) ? YAJL_GET_NUMBER(v) : "0";
		yajl_gen_number(g, text, strlen(text));
	} else if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
		yajl_gen_bool(g, YAJL_IS_TRUE(v));
	} else if (YAJL_IS_ARRAY(v)) {
		yajl_gen_array_open(g);
		for (size_t i = 0; i < YAJL_GET_ARRAY(v)->len; i++)
			generate(g, YAJL_GET_ARRAY(v)->values[i]);
		yajl_gen_array_close(g);
	} else if (YAJL_IS_OBJECT(v)) {
		yajl_gen_map_open(g);
		for (size_t i = 0; i < YAJL_GET_OBJECT(v)->len; i++) {
			const char *key = YAJL_GET_OBJECT(v)->keys[i];
			yajl_gen_string(g, (const unsigned char *)key, strlen(key));
			generate(g, YAJL_GET_OBJECT(v)->values[i]);
		}
		yajl_gen_map_close(g);
	} else {
		yajl_gen_null(g);
	}
}

/* An array or object, kept as its compact JSON text (RateLimit's uc_limits
 * reads an array). */
static void add_other(struct session *out, const char *name, size_t name_len, yajl_val v)
{
	yajl_gen g = yajl_gen_alloc(NULL);
	const unsigned char *text = NULL;
	size_t len = 0;

	generate(g, v);
	if (yajl_gen_get_buf(g, &text, &len) != yajl_gen_status_ok)
		text = NULL, len = 0;
	session_set(out, name, name_len, SESSION_OTHER, text ? (const char *)text : "", len);
	yajl_gen_free(g);
}

static void add_value(struct session *out, const char *name, yajl_val v)
{
	size_t name_len = strlen(name);

	if (YAJL_IS_STRING(v)) {
		const char *text = YAJL_GET_STRING(v);
		session_set(out, name, name_len, SESSION_STRING, text ? text : "",
			    text ? strlen(text) : 0);
	} else if (YAJL_IS_NUMBER(v)) {
		const char *text = YAJL_GET_NUMBER(v);
		session_set(out, name, name_len, SESSION_NUMBER, text ? text : "0",
			    text ? strlen(text) : 1);
	} else if (YAJL_IS_TRUE(v)) {
		session_set(out, name, name_len, SESSION_TRUE, "1", 1);
	} else if (YAJL_IS_FALSE(v)) {
		session_set(out, name, name_len, SESSION_FALSE, "", 0);
	} else if (YAJL_IS_NULL(v)) {
		session_set(out, name, name_len, SESSION_NULL, "", 0);
	} else {
		add_other(out, name, name_len, v);
	}
}

int json_parse_object(const char *text, size_t len, struct session *out, char *error,
		      size_t error_size)
{
	/* yajl_tree wants a NUL-terminated text without NUL inside */
	if (memchr(text, '\0', len) != NULL) {
		snprintf(error, error_size, "NUL byte in the JSON text");
		return -1;
	}
	char *copy = xstrndup(text, len);
	yajl_val tree = yajl_tree_parse(copy, error, error_size);
	free(copy);
	if (tree == NULL) {
		/* yajl's message spans lines; keep the first */
		error[strcspn(error, "\n")] = '\0';
		return -1;
	}
	if (!YAJL_IS_OBJECT(tree)) {
		snprintf(error, error_size, "the JSON text is not an object");
		yajl_tree_free(tree);
		return -1;
	}
	for (size_t i = 0; i < YAJL_GET_OBJECT(tree)->len; i++)
		add_value(out, YAJL_GET_OBJECT(tree)->keys[i], YAJL_GET_OBJECT(tree)->values[i]);
	yajl_tree_free(tree);
	return 0;
}
