/*
 * `threshold` in C: flag values above (or below) a threshold.
 *
 * Behaves exactly as the Rust example (examples/threshold). Params:
 * `threshold` (required finite number) and `direction` (`above`, the default,
 * or `below`). For each updated datapoint uri it writes the datapoint
 * `<uri>._anomaly` at ctx.ts: 1 if the latest value (the one at ctx.ts, else
 * the last in the window) is strictly beyond the threshold, else 0.
 * describe() returns none.
 */
#include "komlog_impulse.h"

bool exports_impulse_describe(impulse_subscription_t *ret) {
    (void)ret;
    return false; /* none */
}

static const char SUFFIX[] = "._anomaly";

/* Parse `direction`: true for below. False (and *err set) when invalid. */
static bool direction_below(const impulse_context_t *ctx, bool *below, impulse_string_t *err) {
    komlog_str_t raw;
    *below = false;
    if (!komlog_param(ctx, "direction", &raw)) return true;
    const char *s = raw.ptr;
    size_t n = raw.len;
    while (n > 0 && komlog_is_space(*s)) s++, n--;
    while (n > 0 && komlog_is_space(s[n - 1])) n--;
    if (n == 5 && memcmp(s, "above", 5) == 0) return true;
    if (n == 5 && memcmp(s, "below", 5) == 0) {
        *below = true;
        return true;
    }
    return komlog_fail(err, "param `direction` must be `above` or `below`, got `%.*s`", (int)n, s);
}

bool exports_impulse_on_update(impulse_context_t *ctx, impulse_list_sample_t *ret, impulse_string_t *err) {
    ret->ptr = NULL;
    ret->len = 0;
    double threshold = 0;
    bool below = false, ok = true;
    switch (komlog_param_f64(ctx, "threshold", &threshold, err)) {
    case KOMLOG_PARAM_ABSENT:
        ok = komlog_fail(err, "param `threshold` is required (a number)");
        break;
    case KOMLOG_PARAM_ERROR:
        ok = false;
        break;
    case KOMLOG_PARAM_OK:
        ok = direction_below(ctx, &below, err);
        break;
    }
    komlog_window_t window = {NULL, 0};
    char why[256];
    if (ok && !komlog_window_decode(ctx->window.ptr, ctx->window.len, &window, why, sizeof why)) {
        ok = komlog_fail(err, "%s", why);
    }
    for (size_t u = 0; ok && u < ctx->updated.len; u++) {
        const char *uri = (const char *)ctx->updated.ptr[u].ptr;
        int uri_len = (int)ctx->updated.ptr[u].len;
        size_t first, end;
        if (!komlog_window_series(&window, uri, (size_t)uri_len, &first, &end)) {
            komlog_warn("threshold: no samples of %.*s in the window", uri_len, uri);
            continue;
        }
        /* The value at ctx.ts, else the last one. */
        const komlog_row_t *latest = &window.rows[end - 1];
        for (size_t i = first; i < end; i++) {
            if (window.rows[i].ts == ctx->ts) latest = &window.rows[i];
        }
        if (!latest->is_datapoint) {
            komlog_debug("threshold: %.*s is not a datapoint series, skipped", uri_len, uri);
            continue;
        }
        bool beyond = below ? latest->datapoint < threshold : latest->datapoint > threshold;
        size_t out_len = (size_t)uri_len + sizeof SUFFIX - 1;
        char *out_uri = malloc(out_len + 1);
        ok = out_uri != NULL;
        if (ok) {
            snprintf(out_uri, out_len + 1, "%.*s%s", uri_len, uri, SUFFIX);
            ok = komlog_push_datapoint(ret, out_uri, out_len, ctx->ts, beyond ? 1.0 : 0.0);
        }
        free(out_uri);
        if (!ok) komlog_fail(err, "threshold: out of memory");
    }
    komlog_window_free(&window);
    impulse_context_free(ctx);
    if (!ok) impulse_list_sample_free(ret);
    return ok;
}
