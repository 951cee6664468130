/*
 * fuzz_json.c: libFuzzer target for SqlUserConfig's JSON (json.c) and the
 * uc_ rules (session.c): parse the input as a user config, then apply every
 * uc_ rule to every key; also read the input as a threshold.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "session.h"

static bool any(const char *text)
{
	return text[0] != '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size)
{
	struct session s, merged;
	char error[256];
	int64_t n;

	session_init(&s);
	session_init(&merged);
	if (json_parse_object((const char *)bytes, size, &s, error, sizeof(error)) == 0) {
		session_merge(&merged, &s);
		for (size_t i = 0; i < s.count; i++) {
			const char *name = s.strings.data + s.values[i].name;
			session_uc_switch(&s, name, true);
			session_uc_number(&s, name, 1000, "fuzz");
			const char *text = session_uc_text(&s, name, "configured", any, "fuzz", "text");
			if (text == NULL || text[0] == '\0')
				abort();
		}
		if (merged.count != s.count)
			abort();
	} else if (error[0] == '\0') {
		abort();                  /* a refusal says why */
	}
	session_parse_number((const char *)bytes, size, &n);
	session_free(&s);
	session_free(&merged);
	return 0;
}
