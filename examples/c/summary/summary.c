/*
 * `summary` in C: hourly statistics of CPU metrics.
 *
 * Behaves exactly as the Rust example (examples/summary): describe()
 * subscribes to cpu.system and cpu.user with past_delta = 1 h; for each
 * updated datapoint uri it writes the datasource `<uri>.last_60min_stats` at
 * ctx.ts, five `name: value` lines (count, mean, sample std, min, max) over the
 * samples with ts in (ctx.ts - 1h, ctx.ts], numbers printed as Rust's `{}`
 * prints them. Datasource uris, and updated uris with no sample in the last
 * hour, are skipped.
 */
#include "komlog_impulse.h"

static const char *const URIS[] = {"cpu.system", "cpu.user"};
static const char SUFFIX[] = ".last_60min_stats";

bool exports_impulse_describe(impulse_subscription_t *ret) {
    size_t n = sizeof URIS / sizeof URIS[0];
    ret->uris.ptr = malloc(n * sizeof *ret->uris.ptr);
    if (!ret->uris.ptr) return false;
    ret->uris.len = n;
    for (size_t i = 0; i < n; i++) impulse_string_dup(&ret->uris.ptr[i], URIS[i]);
    ret->data_reqs.past_delta = (komlog_impulse_types_option_duration_t){true, (uint64_t)KOMLOG_HOUR};
    ret->data_reqs.past_count = (impulse_option_u32_t){false, 0};
    ret->min_exec_delta = (komlog_impulse_types_option_duration_t){false, 0};
    return true;
}

/* The five lines for rows [first, end) of datapoints (summed in order, as
 * the Rust example does, so every digit matches). Returns a heap string. */
static char *stats_text(const komlog_row_t *rows, size_t count) {
    double n = (double)count, total = 0.0;
    for (size_t i = 0; i < count; i++) total += rows[i].datapoint;
    double mean = total / n, std = 0.0;
    if (count > 1) {
        double squares = 0.0;
        for (size_t i = 0; i < count; i++) squares += (rows[i].datapoint - mean) * (rows[i].datapoint - mean);
        std = sqrt(squares / (n - 1.0));
    }
    double low = INFINITY, high = -INFINITY;
    for (size_t i = 0; i < count; i++) {
        if (rows[i].datapoint < low) low = rows[i].datapoint;
        if (rows[i].datapoint > high) high = rows[i].datapoint;
    }
    char b_mean[KOMLOG_F64_BUF], b_std[KOMLOG_F64_BUF], b_min[KOMLOG_F64_BUF], b_max[KOMLOG_F64_BUF];
    const char *fmt = "count: %zu\nmean: %s\nstd: %s\nmin: %s\nmax: %s";
    komlog_format_f64(mean, b_mean);
    komlog_format_f64(std, b_std);
    komlog_format_f64(low, b_min);
    komlog_format_f64(high, b_max);
    int len = snprintf(NULL, 0, fmt, count, b_mean, b_std, b_min, b_max);
    char *text = len < 0 ? NULL : malloc((size_t)len + 1);
    if (text) snprintf(text, (size_t)len + 1, fmt, count, b_mean, b_std, b_min, b_max);
    return text;
}

bool exports_impulse_on_update(impulse_context_t *ctx, impulse_list_sample_t *ret, impulse_string_t *err) {
    komlog_window_t window;
    char why[256];
    ret->ptr = NULL;
    ret->len = 0;
    bool ok = komlog_window_decode(ctx->window.ptr, ctx->window.len, &window, why, sizeof why);
    if (!ok) {
        komlog_fail(err, "%s", why);
        impulse_context_free(ctx);
        return false;
    }
    int64_t after = komlog_before(ctx->ts, KOMLOG_HOUR);
    for (size_t u = 0; ok && u < ctx->updated.len; u++) {
        const char *uri = (const char *)ctx->updated.ptr[u].ptr;
        int uri_len = (int)ctx->updated.ptr[u].len;
        size_t first, end;
        if (!komlog_window_series(&window, uri, (size_t)uri_len, &first, &end)) {
            komlog_warn("summary: no samples of %.*s in the window", uri_len, uri);
            continue;
        }
        if (!window.rows[first].is_datapoint) {
            komlog_debug("summary: %.*s is a datasource, skipped", uri_len, uri);
            continue;
        }
        /* The samples with after < ts <= ctx.ts. */
        size_t start = first;
        while (start < end && window.rows[start].ts <= after) start++;
        size_t stop = start;
        while (stop < end && window.rows[stop].ts <= ctx->ts) stop++;
        if (stop == start) {
            komlog_warn("summary: no samples of %.*s in the last hour", uri_len, uri);
            continue;
        }
        char *text = stats_text(&window.rows[start], stop - start);
        size_t out_len = (size_t)uri_len + sizeof SUFFIX - 1;
        char *out_uri = malloc(out_len + 1);
        if (text && out_uri) {
            snprintf(out_uri, out_len + 1, "%.*s%s", uri_len, uri, SUFFIX);
            ok = komlog_push_datasource(ret, out_uri, out_len, ctx->ts, text, strlen(text));
        } else {
            ok = false;
        }
        free(text);
        free(out_uri);
        if (!ok) komlog_fail(err, "summary: out of memory");
    }
    komlog_window_free(&window);
    impulse_context_free(ctx);
    if (!ok) impulse_list_sample_free(ret);
    return ok;
}
