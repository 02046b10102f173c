/* unclosed-code-fence: flags a response whose fenced code block is never closed.
 *
 * An opening ``` (or ~~~) without its closing fence usually means the response was cut
 * off in the middle of the code, or that the markdown is broken: when rendered, the
 * block swallows everything after it. The rule walks the lines as CommonMark does (a
 * block closes at a fence of the same character, at least as long, with nothing after
 * it) and checks that no block is left open at the end.
 *
 * Responses without fenced code are not its business (relevance 0). */
#include "rules.h"

#define QUOTE_BYTES 40u

static void evaluate(const pack_config_t *config, span_t response, rule_verdict_t *verdict) {
    (void)config;
    line_scanner_t scanner = scanner_new(response);
    span_t line;
    bool is_code;
    while (scanner_next(&scanner, &line, &is_code)) {
    }

    if (scanner.blocks == 0) {
        verdict->score = 0.0f;
        verdict->relevance = 0.0f;
    } else if (scanner.in_code) {
        verdict->score = -1.0f;
        verdict->relevance = 1.0f;
        sb_str(&verdict->rationale, "the code block opened on line ");
        sb_uint(&verdict->rationale, scanner.open.line_no);
        sb_str(&verdict->rationale, " with ");
        sb_quoted(&verdict->rationale, scanner.open.line, QUOTE_BYTES);
        sb_str(&verdict->rationale, " is never closed");
    } else {
        verdict->score = 1.0f;
        verdict->relevance = 1.0f;
    }
}

static const char *const CATEGORIES[] = {"quality", "formatting", NULL};

const rule_t RULE_UNCLOSED_CODE_FENCE = {
    .id = "unclosed-code-fence",
    .title = "Close every code block",
    .description = "Every fenced code block (``` or ~~~) the response opens should be closed; "
                   "an unclosed one usually means a truncated response.",
    .version = "0.1.0",
    .categories = CATEGORIES,
    .evaluate = evaluate,
};
