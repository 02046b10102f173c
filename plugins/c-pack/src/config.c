/* The pack's configuration: defaults, parsing and validation. */
#include "rules.h"

const rule_t *const PACK_RULES[] = {
    &RULE_DEGENERATE_REPETITION,
    &RULE_UNCLOSED_CODE_FENCE,
    NULL,
};

void config_defaults(pack_config_t *config) {
    config->max_repeats = DEFAULT_MAX_REPEATS;
    config->ngram = DEFAULT_NGRAM;
}

/* Parses a whole decimal number in [min, max]: digits only, no sign, no spaces. */
static bool parse_unsigned(span_t text, unsigned min, unsigned max, unsigned *out) {
    if (text.len == 0) return false;
    unsigned long long n = 0;
    for (size_t i = 0; i < text.len; i++) {
        uint8_t c = text.ptr[i];
        if (c < '0' || c > '9') return false;
        n = n * 10 + (c - '0');
        if (n > max) return false;
    }
    if (n < min) return false;
    *out = (unsigned)n;
    return true;
}

/* "config key `max_repeats` = "abc": expected a whole number from 1 to 10000", in the
 * words of the Rust SDK's errors. */
static void invalid_number(strbuf_t *error, span_t key, span_t value, unsigned min, unsigned max) {
    sb_str(error, "config key `");
    sb_bytes(error, key.ptr, key.len);
    sb_str(error, "` = ");
    sb_quoted(error, value, 40);
    sb_str(error, ": expected a whole number from ");
    sb_uint(error, min);
    sb_str(error, " to ");
    sb_uint(error, max);
}

bool config_set(pack_config_t *config, span_t key, span_t value, strbuf_t *error) {
    if (span_eq_cstr(key, "max_repeats")) {
        if (!parse_unsigned(value, 1, 10000, &config->max_repeats)) {
            invalid_number(error, key, value, 1, 10000);
            return false;
        }
        return true;
    }
    if (span_eq_cstr(key, "ngram")) {
        if (!parse_unsigned(value, 2, 64, &config->ngram)) {
            invalid_number(error, key, value, 2, 64);
            return false;
        }
        return true;
    }
    /* A typo in rules.toml should not silently fall back to a default. */
    sb_str(error, "unknown config key ");
    sb_quoted(error, key, 40);
    sb_str(error, " (the C pack knows `max_repeats` and `ngram`)");
    return false;
}
