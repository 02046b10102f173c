/* degenerate-repetition: flags a response that says the same thing over and over.
 *
 * Sampled responses sometimes fall into a loop: the same line, sentence or phrase again
 * and again until the token budget runs out ("I'm sorry. I'm sorry. I'm sorry. ...").
 * The rule counts, in the prose of the response (fenced code blocks are skipped: code is
 * repetitive by nature):
 *
 *   - lines: each line of at least MIN_LINE_BYTES bytes and MIN_LINE_WORDS words
 *     (markdown table rows aside);
 *   - phrases: every run of `ngram` consecutive words (default 8), wherever it starts,
 *     so overlapping occurrences count.
 *
 * Both are compared as sequences of words: runs of letters and digits, case-insensitively
 * (ASCII); punctuation and spacing do not matter ("Thank you! Have a nice day." equals
 * "thank you, have a nice day").
 *
 * If the most frequent line or phrase occurs more than `max_repeats` times (default 4),
 * the response violates the rule, with a score from -0.5 (just over the limit) down to
 * -1.0 (twice the limit and more). Otherwise it follows the rule. The rule does not apply
 * (relevance 0) to responses of fewer than MIN_WORDS words, and its relevance grows with
 * the length of the response up to 1.0 at FULL_RELEVANCE_WORDS words: a loop is a
 * failure of long generations.
 *
 * Everything is counted exactly (hash table, then byte comparison), in time linear in
 * the length of the response. */
#include <stdlib.h>
#include <string.h>

#include "rules.h"

#define MIN_WORDS 16u
#define FULL_RELEVANCE_WORDS 128u
#define MIN_LINE_BYTES 8u
#define MIN_LINE_WORDS 2u
#define QUOTE_BYTES 60u

/* A word of the lower-cased response, with its hash (computed once). */
typedef struct word {
    span_t text;
    uint64_t hash;
} word_t;

/* A growable array of words. */
typedef struct words {
    word_t *items;
    size_t len;
    size_t cap;
} words_t;

static void words_push(words_t *w, word_t item) {
    if (w->len == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        word_t *items = realloc(w->items, cap * sizeof *items);
        if (items == NULL) abort();
        w->items = items;
        w->cap = cap;
    }
    w->items[w->len++] = item;
}

/* ---- Counting repeated units ------------------------------------------------------ */

/* A sequence of units (lines, or phrases) to count, seen through two callbacks. */
typedef struct units {
    size_t count;
    uint64_t (*hash)(const void *ctx, size_t i);
    bool (*equal)(const void *ctx, size_t i, size_t j);
    const void *ctx;
} units_t;

/* The most frequent unit: the index of its first occurrence, and how often it occurs. */
typedef struct top {
    size_t first;
    size_t count;
} top_t;

typedef struct slot {
    uint64_t hash;
    size_t first_plus_one; /* 0 = empty slot */
    size_t count;
} slot_t;

/* Counts equal units with an open-addressing hash table. Ties go to the unit that occurs
 * first, so the result does not depend on the table's layout. */
static top_t most_repeated(const units_t *u) {
    top_t best = {0, 0};
    if (u->count == 0) return best;
    size_t cap = 16;
    while (cap < u->count * 2) cap *= 2;
    slot_t *table = calloc(cap, sizeof *table);
    if (table == NULL) abort();

    for (size_t i = 0; i < u->count; i++) {
        uint64_t h = u->hash(u->ctx, i);
        size_t at = (size_t)h & (cap - 1);
        for (;;) {
            slot_t *slot = &table[at];
            if (slot->first_plus_one == 0) {
                *slot = (slot_t){h, i + 1, 1};
                break;
            }
            if (slot->hash == h && u->equal(u->ctx, slot->first_plus_one - 1, i)) {
                slot->count++;
                break;
            }
            at = (at + 1) & (cap - 1);
        }
        slot_t *slot = &table[at];
        size_t first = slot->first_plus_one - 1;
        if (slot->count > best.count || (slot->count == best.count && first < best.first)) {
            best = (top_t){first, slot->count};
        }
    }
    free(table);
    return best;
}

/* FNV-1a, 64 bits: simple and good enough to spread the units over the table. */
#define FNV_OFFSET 14695981039346656037ull
#define FNV_PRIME 1099511628211ull

static uint64_t fnv1a(uint64_t h, span_t bytes) {
    for (size_t i = 0; i < bytes.len; i++) {
        h ^= bytes.ptr[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* A unit of text seen as a sequence of words: words[first] .. words[first + n - 1]. */
typedef struct word_run {
    size_t first;
    size_t n;
} word_run_t;

/* Combines the hashes of the words of a run (order matters). */
static uint64_t words_hash(const words_t *words, word_run_t run) {
    uint64_t h = FNV_OFFSET;
    for (size_t k = 0; k < run.n; k++) h = (h ^ words->items[run.first + k].hash) * FNV_PRIME;
    return h;
}

static bool words_equal(const words_t *words, word_run_t a, word_run_t b) {
    if (a.n != b.n) return false;
    for (size_t k = 0; k < a.n; k++) {
        const word_t *x = &words->items[a.first + k], *y = &words->items[b.first + k];
        if (x->hash != y->hash || !span_eq(x->text, y->text)) return false;
    }
    return true;
}

/* Lines: line i is the word run lines->runs[i]. */
typedef struct lines {
    const words_t *words;
    word_run_t *runs;
    span_t *text; /* the trimmed line, for quoting */
    size_t len;
    size_t cap;
} lines_t;

static void lines_push(lines_t *l, word_run_t run, span_t text) {
    if (l->len == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        word_run_t *runs = realloc(l->runs, cap * sizeof *runs);
        if (runs == NULL) abort();
        l->runs = runs;
        span_t *texts = realloc(l->text, cap * sizeof *texts);
        if (texts == NULL) abort();
        l->text = texts;
        l->cap = cap;
    }
    l->runs[l->len] = run;
    l->text[l->len] = text;
    l->len++;
}

static uint64_t line_hash(const void *ctx, size_t i) {
    const lines_t *l = ctx;
    return words_hash(l->words, l->runs[i]);
}

static bool line_equal(const void *ctx, size_t i, size_t j) {
    const lines_t *l = ctx;
    return words_equal(l->words, l->runs[i], l->runs[j]);
}

/* Phrases: phrase i is the words i .. i+n-1. */
typedef struct phrases {
    const words_t *words;
    size_t n;
} phrases_t;

static uint64_t phrase_hash(const void *ctx, size_t i) {
    const phrases_t *p = ctx;
    return words_hash(p->words, (word_run_t){i, p->n});
}

static bool phrase_equal(const void *ctx, size_t i, size_t j) {
    const phrases_t *p = ctx;
    return words_equal(p->words, (word_run_t){i, p->n}, (word_run_t){j, p->n});
}

/* ---- The rule ---------------------------------------------------------------------- */

/* Splits the prose of `folded` (the lower-cased response) into counted lines and words. */
static void collect(span_t folded, lines_t *lines, words_t *words) {
    line_scanner_t scanner = scanner_new(folded);
    span_t line;
    bool is_code;
    while (scanner_next(&scanner, &line, &is_code)) {
        if (is_code) continue;
        size_t words_before = words->len;
        for (size_t i = 0; i < line.len;) {
            if (!is_word_byte(line.ptr[i])) {
                i++;
                continue;
            }
            size_t start = i;
            while (i < line.len && is_word_byte(line.ptr[i])) i++;
            span_t text = {line.ptr + start, i - start};
            words_push(words, (word_t){text, fnv1a(FNV_OFFSET, text)});
        }
        span_t trimmed = span_trim(line);
        bool table_row = trimmed.len > 0 && trimmed.ptr[0] == '|';
        if (!table_row && trimmed.len >= MIN_LINE_BYTES && words->len - words_before >= MIN_LINE_WORDS) {
            lines_push(lines, (word_run_t){words_before, words->len - words_before}, trimmed);
        }
    }
}

/* The same bytes of the original response as `part` is of `folded` (same offsets). */
static span_t original(span_t response, span_t folded, span_t part) {
    return (span_t){response.ptr + (part.ptr - folded.ptr), part.len};
}

static void evaluate(const pack_config_t *config, span_t response, rule_verdict_t *verdict) {
    /* A lower-cased copy: equal units are then equal bytes. Offsets stay the same. */
    uint8_t *folded_bytes = malloc(response.len ? response.len : 1);
    if (folded_bytes == NULL) abort();
    for (size_t i = 0; i < response.len; i++) folded_bytes[i] = ascii_lower(response.ptr[i]);
    span_t folded = {folded_bytes, response.len};

    words_t words = {0};
    lines_t lines = {.words = &words};
    collect(folded, &lines, &words);

    if (words.len < MIN_WORDS) {
        verdict->score = 0.0f;
        verdict->relevance = 0.0f;
    } else {
        units_t line_units = {lines.len, line_hash, line_equal, &lines};
        top_t top_line = most_repeated(&line_units);

        phrases_t phrases = {&words, config->ngram};
        size_t phrase_count = words.len >= config->ngram ? words.len - config->ngram + 1 : 0;
        units_t phrase_units = {phrase_count, phrase_hash, phrase_equal, &phrases};
        top_t top_phrase = most_repeated(&phrase_units);

        bool line_is_worse = top_line.count >= top_phrase.count;
        size_t count = line_is_worse ? top_line.count : top_phrase.count;

        if (count > config->max_repeats) {
            /* -0.5 just over the limit, -1.0 at twice the limit (counting the first). */
            float severity = (float)count / (2.0f * (float)(config->max_repeats + 1));
            verdict->score = -(severity < 0.5f ? 0.5f : severity > 1.0f ? 1.0f : severity);
            verdict->relevance = 1.0f;

            span_t quote;
            if (line_is_worse) {
                quote = lines.text[top_line.first];
                sb_str(&verdict->rationale, "the line ");
            } else {
                span_t first = words.items[top_phrase.first].text;
                span_t last = words.items[top_phrase.first + config->ngram - 1].text;
                quote = (span_t){first.ptr, (size_t)(last.ptr + last.len - first.ptr)};
                sb_str(&verdict->rationale, "the phrase ");
            }
            sb_quoted(&verdict->rationale, original(response, folded, quote), QUOTE_BYTES);
            sb_str(&verdict->rationale, " occurs ");
            sb_uint(&verdict->rationale, count);
            sb_str(&verdict->rationale, " times (at most ");
            sb_uint(&verdict->rationale, config->max_repeats);
            sb_str(&verdict->rationale, " allowed)");
        } else {
            verdict->score = 1.0f;
            verdict->relevance =
                words.len >= FULL_RELEVANCE_WORDS ? 1.0f : (float)words.len / (float)FULL_RELEVANCE_WORDS;
        }
    }

    free(lines.runs);
    free(lines.text);
    free(words.items);
    free(folded_bytes);
}

static const char *const CATEGORIES[] = {"quality", "degeneration", NULL};

const rule_t RULE_DEGENERATE_REPETITION = {
    .id = "degenerate-repetition",
    .title = "Do not repeat yourself in a loop",
    .description = "The response should not repeat the same line or phrase over and over "
                   "(a sampling loop). Fenced code is ignored. Config: `max_repeats` (how many "
                   "times one line or phrase may occur, default 4) and `ngram` (words per "
                   "phrase, default 8).",
    .version = "0.1.0",
    .categories = CATEGORIES,
    .evaluate = evaluate,
};
