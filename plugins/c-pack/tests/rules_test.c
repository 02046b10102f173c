/* Native unit tests of the C pack's rules (no WebAssembly involved). Build and run from
 * the repository root with any C compiler and the system libc:
 *
 *   cc -std=c11 -Wall -Wextra -Iplugins/c-pack/src plugins/c-pack/tests/rules_test.c \
 *      plugins/c-pack/src/{repetition,code_fence,config,strbuf,text}.c -o /tmp/c-pack-test \
 *      && /tmp/c-pack-test
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules.h"

static int failures, checks;

#define CHECK(cond)                                                              \
    do {                                                                         \
        checks++;                                                                \
        if (!(cond)) {                                                           \
            failures++;                                                          \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                        \
    } while (0)

typedef struct result {
    float score, relevance;
    char rationale[512];
} result_t;

static result_t run(const rule_t *rule, const pack_config_t *config, const char *response) {
    rule_verdict_t v = {0};
    rule->evaluate(config, span_from_cstr(response), &v);
    result_t r = {v.score, v.relevance, ""};
    size_t n = v.rationale.len < sizeof r.rationale - 1 ? v.rationale.len : sizeof r.rationale - 1;
    if (n) memcpy(r.rationale, v.rationale.ptr, n);
    sb_free(&v.rationale);
    return r;
}

/* `times` copies of `unit`, in a static buffer. */
static const char *repeat(const char *prefix, const char *unit, int times) {
    static char buf[8192];
    strcpy(buf, prefix);
    for (int i = 0; i < times; i++) strcat(buf, unit);
    return buf;
}

static const char *PROSE =
    "Photosynthesis turns light into chemical energy. Plants capture photons with chlorophyll,\n"
    "split water, and release oxygen. The energy is stored in sugars that the plant later burns\n"
    "for growth. In the Calvin cycle, carbon dioxide is fixed into three-carbon molecules, which\n"
    "are then assembled into glucose. Light reactions happen in the thylakoid membranes, while\n"
    "the Calvin cycle runs in the stroma of the chloroplast.\n";

static void test_repetition(void) {
    pack_config_t config;
    config_defaults(&config);
    const rule_t *rule = &RULE_DEGENERATE_REPETITION;

    result_t r = run(rule, &config, "I'm sorry. I'm sorry. I'm sorry. I'm sorry.");
    CHECK(r.relevance == 0.0f && r.score == 0.0f); /* too short to judge */

    r = run(rule, &config, PROSE);
    CHECK(r.score == 1.0f);
    CHECK(r.relevance > 0.3f && r.relevance < 1.0f);
    CHECK(r.rationale[0] == '\0');

    /* A sentence loop on one line: caught as a phrase. */
    r = run(rule, &config, repeat("Sure! ", "I am not able to help with that request today. ", 12));
    CHECK(r.score <= -0.5f && r.relevance == 1.0f);
    CHECK(strstr(r.rationale, "the phrase \"") == r.rationale);
    CHECK(strstr(r.rationale, "(at most 4 allowed)") != NULL);

    /* A short line repeated on its own lines (shorter than a phrase): caught as a line,
     * case-insensitively. */
    r = run(rule, &config, repeat("Here you go:\n", "Thank you!  Have a nice day.\nthank you! have a nice day.\n", 4));
    CHECK(r.score < 0.0f);
    CHECK(strstr(r.rationale, "the line \"Thank you!  Have a nice day.\" occurs 8 times") == r.rationale);

    /* Exactly at the limit is fine; one more is not. */
    r = run(rule, &config, repeat("", "The quick brown fox jumps over the lazy dog today.\n", 4));
    CHECK(r.score == 1.0f);
    r = run(rule, &config, repeat("", "The quick brown fox jumps over the lazy dog today.\n", 5));
    CHECK(r.score == -0.5f);
    r = run(rule, &config, repeat("", "The quick brown fox jumps over the lazy dog today.\n", 40));
    CHECK(r.score == -1.0f);

    /* Code is skipped. */
    r = run(rule, &config, repeat("Here is the table as code, as you asked for it:\n```c\n", "    total = total + values[i] * weight;\n", 30));
    CHECK(r.score == 0.0f && r.relevance == 0.0f); /* the prose alone is too short */

    /* A word loop. */
    r = run(rule, &config, repeat("", "ha ", 60));
    CHECK(r.score == -1.0f);
    CHECK(strstr(r.rationale, "\"ha ha ha ha ha ha ha ha\" occurs 53 times") != NULL);

    /* Configured threshold and phrase length. */
    pack_config_t strict = config;
    strbuf_t err = {0};
    CHECK(config_set(&strict, span_from_cstr("max_repeats"), span_from_cstr("20"), &err));
    CHECK(config_set(&strict, span_from_cstr("ngram"), span_from_cstr("3"), &err));
    r = run(rule, &strict, repeat("", "I am not able to help with that request today. ", 12));
    CHECK(r.score == 1.0f);

    /* Long quotes are cut at a character boundary. */
    r = run(rule, &config, repeat("", "Ça ne va pas très bien aujourd'hui, je suis désolé — vraiment désolé, mon ami.\n", 6));
    CHECK(strstr(r.rationale, "...\" occurs 6 times") != NULL);
}

static void test_code_fence(void) {
    pack_config_t config;
    config_defaults(&config);
    const rule_t *rule = &RULE_UNCLOSED_CODE_FENCE;

    result_t r = run(rule, &config, "No code here.");
    CHECK(r.score == 0.0f && r.relevance == 0.0f);

    r = run(rule, &config, "Try this:\n```python\nprint('hi')\n```\nDone.\n");
    CHECK(r.score == 1.0f && r.relevance == 1.0f);

    r = run(rule, &config, "Try this:\r\n```python\r\nprint('hi')\r\n```\r\n\r\nAnd:\r\n~~~\r\nls\r\n");
    CHECK(r.score == -1.0f);
    CHECK(strcmp(r.rationale, "the code block opened on line 7 with \"~~~\" is never closed") == 0);

    /* A shorter or different fence inside does not close the block. */
    r = run(rule, &config, "````md\n```js\nx()\n```\n~~~~\n");
    CHECK(r.score == -1.0f);
    r = run(rule, &config, "````md\n```js\nx()\n```\n````\n");
    CHECK(r.score == 1.0f);
    /* Indented fences (in lists) count. */
    r = run(rule, &config, "1. Run:\n   ```sh\n   make\n   ```\n2. Done\n");
    CHECK(r.score == 1.0f);
    /* Backticks in the info string: not a fence. */
    r = run(rule, &config, "Use ``` `x` ``` inline.\n");
    CHECK(r.relevance == 0.0f);
}

static void test_config(void) {
    pack_config_t config;
    config_defaults(&config);
    CHECK(config.max_repeats == DEFAULT_MAX_REPEATS && config.ngram == DEFAULT_NGRAM);
    strbuf_t err = {0};
    CHECK(!config_set(&config, span_from_cstr("max_repeats"), span_from_cstr("-3"), &err));
    sb_bytes(&err, "", 1);
    CHECK(strcmp((char *)err.ptr, "config key `max_repeats` = \"-3\": expected a whole number from 1 to 10000") == 0);
    sb_free(&err);
    CHECK(!config_set(&config, span_from_cstr("ngram"), span_from_cstr("99999999999999999999"), &err));
    sb_free(&err);
    CHECK(!config_set(&config, span_from_cstr("ngram"), span_from_cstr("1"), &err));
    sb_free(&err);
    CHECK(!config_set(&config, span_from_cstr("max_repeat"), span_from_cstr("3"), &err));
    sb_bytes(&err, "", 1);
    CHECK(strstr((char *)err.ptr, "unknown config key \"max_repeat\"") == (char *)err.ptr);
    sb_free(&err);
    CHECK(config.max_repeats == DEFAULT_MAX_REPEATS && config.ngram == DEFAULT_NGRAM);
}

int main(void) {
    test_repetition();
    test_code_fence();
    test_config();
    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures != 0;
}
