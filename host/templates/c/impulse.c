/*
 * `@NAME@`: a komlogd impulse.
 *
 * For each updated uri that holds numbers, it writes the mean of that uri's
 * samples in the window to the datapoint `<uri>.@NAME@` at the fire's
 * timestamp. How much history the window holds is set by `data_reqs` in
 * komlogd.yaml (by default, the latest sample only).
 *
 * impulse.h (the bindings) and komlog_impulse.h (the komlogd C helper) are
 * written by `komlog-c build`.
 */
#include "komlog_impulse.h"

static const char SUFFIX[] = ".@NAME@";

bool exports_impulse_describe(impulse_subscription_t *ret) {
    (void)ret;
    return false; /* no default subscription: uris come from komlogd.yaml */
}

bool exports_impulse_on_update(impulse_context_t *ctx, impulse_list_sample_t *ret, impulse_string_t *err) {
    ret->ptr = NULL;
    ret->len = 0;
    komlog_window_t window;
    char why[256];
    if (!komlog_window_decode(ctx->window.ptr, ctx->window.len, &window, why, sizeof why)) {
        impulse_context_free(ctx);
        return komlog_fail(err, "%s", why);
    }
    bool ok = true;
    for (size_t u = 0; ok && u < ctx->updated.len; u++) {
        const char *uri = (const char *)ctx->updated.ptr[u].ptr;
        size_t uri_len = ctx->updated.ptr[u].len;
        size_t first, end;
        if (!komlog_window_series(&window, uri, uri_len, &first, &end) || !window.rows[first].is_datapoint) {
            continue;
        }
        double total = 0.0;
        for (size_t i = first; i < end; i++) total += window.rows[i].datapoint;
        size_t out_len = uri_len + sizeof SUFFIX - 1;
        char *out_uri = malloc(out_len + 1);
        ok = out_uri != NULL;
        if (ok) {
            snprintf(out_uri, out_len + 1, "%.*s%s", (int)uri_len, uri, SUFFIX);
            ok = komlog_push_datapoint(ret, out_uri, out_len, ctx->ts, total / (double)(end - first));
        }
        free(out_uri);
        if (!ok) komlog_fail(err, "@NAME@: out of memory");
    }
    komlog_window_free(&window);
    impulse_context_free(ctx);
    if (!ok) impulse_list_sample_free(ret);
    return ok;
}
