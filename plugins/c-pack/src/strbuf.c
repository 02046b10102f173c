#include "strbuf.h"

#include <stdlib.h>
#include <string.h>

/* Out of memory is not recoverable in a rule: trap, and let the host report it. */
static void reserve(strbuf_t *sb, size_t extra) {
    if (sb->len + extra <= sb->cap) return;
    size_t cap = sb->cap ? sb->cap : 32;
    while (cap < sb->len + extra) cap *= 2;
    uint8_t *ptr = realloc(sb->ptr, cap);
    if (ptr == NULL) abort();
    sb->ptr = ptr;
    sb->cap = cap;
}

void sb_bytes(strbuf_t *sb, const void *bytes, size_t len) {
    if (len == 0) return;
    reserve(sb, len);
    memcpy(sb->ptr + sb->len, bytes, len);
    sb->len += len;
}

void sb_str(strbuf_t *sb, const char *s) {
    sb_bytes(sb, s, strlen(s));
}

void sb_uint(strbuf_t *sb, unsigned long long n) {
    char digits[20];
    size_t count = 0;
    do {
        digits[count++] = (char)('0' + n % 10);
        n /= 10;
    } while (n != 0);
    while (count > 0) sb_bytes(sb, &digits[--count], 1);
}

void sb_quoted(strbuf_t *sb, span_t text, size_t max) {
    size_t len = text.len;
    int cut = len > max;
    if (cut) {
        len = max;
        /* Do not split a UTF-8 character: back up over continuation bytes (10xxxxxx). */
        while (len > 0 && (text.ptr[len] & 0xC0) == 0x80) len--;
    }
    sb_str(sb, "\"");
    for (size_t i = 0; i < len; i++) {
        uint8_t c = text.ptr[i];
        sb_bytes(sb, (c < 0x20 || c == 0x7F) ? (const uint8_t *)" " : &c, 1);
    }
    sb_str(sb, cut ? "...\"" : "\"");
}

void sb_free(strbuf_t *sb) {
    free(sb->ptr);
    sb->ptr = NULL;
    sb->len = sb->cap = 0;
}
