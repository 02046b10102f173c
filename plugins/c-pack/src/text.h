/* Byte-level text helpers shared by the rules: spans, lines, and fenced code blocks.
 *
 * Text is UTF-8 as the contract guarantees, but the rules only need to understand ASCII:
 * every byte >= 0x80 (part of a non-ASCII character) is treated as a letter. */
#ifndef C_PACK_TEXT_H
#define C_PACK_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A borrowed slice of bytes. */
typedef struct span {
    const uint8_t *ptr;
    size_t len;
} span_t;

span_t span_from_cstr(const char *s);
bool span_eq(span_t a, span_t b);
bool span_eq_cstr(span_t a, const char *s);
span_t span_trim(span_t s);

bool is_space(uint8_t c);
/* Letters, digits and every byte of a non-ASCII character. */
bool is_word_byte(uint8_t c);
uint8_t ascii_lower(uint8_t c);

/* An open fenced code block: ``` or ~~~ (three or more), as in CommonMark. */
typedef struct fence {
    uint8_t ch;      /* '`' or '~' */
    size_t len;      /* how many of them opened it */
    size_t line_no;  /* 1-based line of the opening fence */
    span_t line;     /* the opening line, trimmed */
} fence_t;

/* Walks a text line by line (split on '\n', a trailing '\r' dropped) and tracks fenced
 * code blocks. Fences may be indented by any amount (models indent them in lists). */
typedef struct line_scanner {
    span_t text;
    size_t pos;
    size_t line_no;  /* of the line last returned, 1-based */
    bool in_code;    /* inside a fenced block after the line last returned */
    fence_t open;    /* the open fence while in_code */
    size_t blocks;   /* fenced blocks opened so far */
} line_scanner_t;

line_scanner_t scanner_new(span_t text);
/* Returns false at the end of the text. Otherwise sets *line and *is_code: true for
 * fence lines and the lines inside a fenced block, false for prose. */
bool scanner_next(line_scanner_t *s, span_t *line, bool *is_code);

#endif
