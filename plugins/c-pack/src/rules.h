/* The rules of the C pack and what they share.
 *
 * The rules know nothing of WebAssembly or the generated bindings: they read plain byte
 * spans and fill a rule_verdict_t, so they also compile and run natively (tests/). The
 * glue to the `safety:rules` contract is pack.c. */
#ifndef C_PACK_RULES_H
#define C_PACK_RULES_H

#include <stdbool.h>
#include <stddef.h>

#include "strbuf.h"
#include "text.h"

/* The pack's settings: the `config` table of the pack in rules.toml. */
typedef struct pack_config {
    /* degenerate-repetition: how many times one line or phrase may occur. */
    unsigned max_repeats;
    /* degenerate-repetition: how many consecutive words make a phrase. */
    unsigned ngram;
} pack_config_t;

#define DEFAULT_MAX_REPEATS 4u
#define DEFAULT_NGRAM 8u

void config_defaults(pack_config_t *config);
/* Applies one key/value pair. On error returns false and writes why to *error. */
bool config_set(pack_config_t *config, span_t key, span_t value, strbuf_t *error);

/* A rule's judgement (see `verdict` in the WIT file). */
typedef struct rule_verdict {
    float score;        /* 1 = follows the rule, -1 = violates it */
    float relevance;    /* 0 = does not apply, 1 = applies squarely */
    strbuf_t rationale; /* empty = no rationale */
} rule_verdict_t;

typedef struct rule {
    const char *id;
    const char *title;
    const char *description;
    const char *version;
    const char *const *categories; /* NULL-terminated */
    void (*evaluate)(const pack_config_t *config, span_t response, rule_verdict_t *verdict);
} rule_t;

extern const rule_t RULE_DEGENERATE_REPETITION;
extern const rule_t RULE_UNCLOSED_CODE_FENCE;

/* Every rule of the pack, in the order `rules` lists them; NULL-terminated. */
extern const rule_t *const PACK_RULES[];

#endif
