/*
 * admin.c: reading an admin client's request (see admin.h): when it is
 * in, a tallyctl line's arguments, and which HTTP request asks for the
 * metrics.  No state of its own; any thread.
 */
#include <string.h>

#include "admin.h"

void admin_input_init(struct admin_input *in)
{
	in->len = 0;
	in->text[0] = '\0';
}

char *admin_input_space(struct admin_input *in, size_t *room)
{
	*room = sizeof(in->text) - 1 - in->len;
	return in->text + in->len;
}

enum admin_input_state admin_input_add(struct admin_input *in, size_t n)
{
	const char *added = in->text + in->len;   /* the text before has no newline, no NUL */

	in->len += n;
	in->text[in->len] = '\0';
	size_t text = strcspn(added, "\n");    /* stops at a newline or a NUL */
	if (added[text] == '\n')
		return ADMIN_INPUT_LINE;
	if (text < n)
		return ADMIN_INPUT_NO_LINE;     /* a NUL: not a text line, answered at once */
	return n > 0 && in->len + 1 < sizeof(in->text) ? ADMIN_INPUT_MORE : ADMIN_INPUT_NO_LINE;
}

int admin_split_command(char *line, char **args)
{
	char *save = NULL;
	int count = 0;
	size_t len = strcspn(line, "\n");

	/* the line alone picks the separators, not what a client sent after it */
	if (len > 0 && line[len - 1] == '\r')
		len--;
	line[len] = '\0';
	const char *separators = strchr(line, '\t') ? "\t" : " ";
	for (char *a = strtok_r(line, separators, &save); a && count < ADMIN_ARGS_MAX;
	     a = strtok_r(NULL, separators, &save))
		args[count++] = a;
	return count;
}

bool admin_asks_for_metrics(const char *request)
{
	return strncmp(request, "GET /metrics ", 13) == 0 || strncmp(request, "GET / ", 6) == 0;
}
