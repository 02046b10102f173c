#include "text.h"

#include <string.h>

span_t span_from_cstr(const char *s) {
    return (span_t){(const uint8_t *)s, strlen(s)};
}

bool span_eq(span_t a, span_t b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

bool span_eq_cstr(span_t a, const char *s) {
    return span_eq(a, span_from_cstr(s));
}

bool is_space(uint8_t c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

bool is_word_byte(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

uint8_t ascii_lower(uint8_t c) {
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c - 'A' + 'a') : c;
}

span_t span_trim(span_t s) {
    while (s.len > 0 && is_space(s.ptr[0])) {
        s.ptr++;
        s.len--;
    }
    while (s.len > 0 && is_space(s.ptr[s.len - 1])) s.len--;
    return s;
}

/* How many times `ch` repeats at the start of `s`. */
static size_t run_of(span_t s, uint8_t ch) {
    size_t n = 0;
    while (n < s.len && s.ptr[n] == ch) n++;
    return n;
}

/* Is the trimmed line a fence that opens a block? Then fills *fence (but line_no). */
static bool opens_fence(span_t trimmed, fence_t *fence) {
    if (trimmed.len < 3 || (trimmed.ptr[0] != '`' && trimmed.ptr[0] != '~')) return false;
    uint8_t ch = trimmed.ptr[0];
    size_t len = run_of(trimmed, ch);
    if (len < 3) return false;
    /* CommonMark: the info string of a backtick fence may not contain backticks. */
    if (ch == '`') {
        for (size_t i = len; i < trimmed.len; i++) {
            if (trimmed.ptr[i] == '`') return false;
        }
    }
    *fence = (fence_t){.ch = ch, .len = len, .line = trimmed};
    return true;
}

/* Does the trimmed line close the block `open`: the same character, at least as many,
 * and nothing after them? */
static bool closes_fence(span_t trimmed, const fence_t *open) {
    size_t len = run_of(trimmed, open->ch);
    return len >= open->len && len == trimmed.len;
}

line_scanner_t scanner_new(span_t text) {
    return (line_scanner_t){.text = text};
}

bool scanner_next(line_scanner_t *s, span_t *line, bool *is_code) {
    if (s->pos >= s->text.len) return false;
    size_t start = s->pos, end = start;
    while (end < s->text.len && s->text.ptr[end] != '\n') end++;
    s->pos = end < s->text.len ? end + 1 : end;
    s->line_no++;
    if (end > start && s->text.ptr[end - 1] == '\r') end--;
    *line = (span_t){s->text.ptr + start, end - start};

    span_t trimmed = span_trim(*line);
    if (s->in_code) {
        if (closes_fence(trimmed, &s->open)) s->in_code = false;
        *is_code = true;
    } else if (opens_fence(trimmed, &s->open)) {
        s->open.line_no = s->line_no;
        s->in_code = true;
        s->blocks++;
        *is_code = true;
    } else {
        *is_code = false;
    }
    return true;
}
