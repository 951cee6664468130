/*
 * json.c: JSON object → session values (see json.h), with yajl's tree
 * parser.  No shared state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "json.h"
#include "log.h"

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
		session_set(out, name, name_len, SESSION_OTHER, "", 0);
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
