/*
 * `counter` in C: a stateful impulse, as the Rust example (examples/counter).
 *
 * It counts the fires it has seen and writes the running count to
 * `<uri>.count` at ctx.ts for each updated uri. Built for the
 * `stateful-impulse` world (`komlog-c build --world stateful-impulse`): at a
 * swap the count is handed to the next version as 8 little-endian bytes (an
 * unsigned 64-bit integer), the format of the Rust, Python and JavaScript
 * counters, so they can replace each other and count on. A state of another
 * length is refused (the next version starts from zero).
 */
#include "komlog_impulse.h"

static uint64_t count;

static const char SUFFIX[] = ".count";

bool exports_impulse_describe(impulse_subscription_t *ret) {
    (void)ret;
    return false; /* none */
}

bool exports_impulse_on_update(impulse_context_t *ctx, impulse_list_sample_t *ret, impulse_string_t *err) {
    ret->ptr = NULL;
    ret->len = 0;
    count++;
    bool ok = true;
    for (size_t i = 0; ok && i < ctx->updated.len; i++) {
        const impulse_string_t *uri = &ctx->updated.ptr[i];
        size_t n = uri->len + sizeof SUFFIX - 1;
        char *out_uri = malloc(n);
        if (!out_uri) {
            ok = komlog_fail(err, "out of memory");
            break;
        }
        memcpy(out_uri, uri->ptr, uri->len);
        memcpy(out_uri + uri->len, SUFFIX, sizeof SUFFIX - 1);
        ok = komlog_push_datapoint(ret, out_uri, n, ctx->ts, (double)count) ||
             komlog_fail(err, "out of memory");
        free(out_uri);
    }
    impulse_context_free(ctx);
    if (!ok) impulse_list_sample_free(ret);
    return ok;
}

void exports_impulse_snapshot(impulse_list_u8_t *ret) {
    ret->ptr = malloc(8);
    ret->len = ret->ptr ? 8 : 0;
    for (size_t i = 0; i < ret->len; i++) ret->ptr[i] = (uint8_t)(count >> (8 * i));
}

bool exports_impulse_restore(impulse_list_u8_t *state, impulse_string_t *err) {
    bool ok = state->len == 8;
    if (ok) {
        uint64_t n = 0;
        for (size_t i = 0; i < 8; i++) n |= (uint64_t)state->ptr[i] << (8 * i);
        count = n;
    } else {
        komlog_fail(err, "expected 8 bytes of state, got %zu", state->len);
    }
    impulse_list_u8_free(state);
    return ok;
}
