/* A growable byte string, used to build rationales and error messages. */
#ifndef C_PACK_STRBUF_H
#define C_PACK_STRBUF_H

#include <stddef.h>
#include <stdint.h>

#include "text.h"

typedef struct strbuf {
    uint8_t *ptr; /* malloc'ed; NULL while empty */
    size_t len;
    size_t cap;
} strbuf_t;

void sb_bytes(strbuf_t *sb, const void *bytes, size_t len);
void sb_str(strbuf_t *sb, const char *s);
void sb_uint(strbuf_t *sb, unsigned long long n);
/* Appends `text` between double quotes, cut to at most `max` bytes (at a UTF-8 character
 * boundary, marked with "...") and with control characters replaced by spaces. */
void sb_quoted(strbuf_t *sb, span_t text, size_t max);
void sb_free(strbuf_t *sb);

#endif
