/*
 * komlog_impulse.h: header-only helper for komlogd impulses written in C.
 *
 * It owns what the generated bindings (impulse.h, from wit/impulse.wit by
 * wit-bindgen-c) do not give:
 *
 *   - komlog_window_decode: a reader of the window's Arrow IPC stream
 *     (schema uri: utf8, ts: timestamp[us, UTC], datapoint: float64?,
 *     datasource: utf8?) into rows; komlog_window_series finds one uri's rows;
 *   - komlog_push_datapoint / komlog_push_datasource: append samples to the
 *     on-update result (strings are copied to the heap, as the canonical ABI
 *     frees them after the call);
 *   - komlog_param / komlog_param_f64: the context's parameters;
 *   - komlog_fail: set the `err` result with a formatted message;
 *   - komlog_log and komlog_debug/info/warn/error: the host's log import;
 *   - komlog_format_f64: a number as Rust's `{}` prints it (2, 2.5,
 *     0.0000001), so texts match the Rust SDK's.
 *
 * `komlog-c build` writes this header beside the generated bindings, so
 * `#include "komlog_impulse.h"` works with no -I flag.
 *
 * Strings in a decoded window point into the context's window bytes: keep
 * the context alive (do not free it) while using the window.
 */
#ifndef KOMLOG_IMPULSE_H
#define KOMLOG_IMPULSE_H

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "impulse.h"

/* Durations in the contract's unit, microseconds. */
#define KOMLOG_SECOND INT64_C(1000000)
#define KOMLOG_MINUTE (60 * KOMLOG_SECOND)
#define KOMLOG_HOUR (60 * KOMLOG_MINUTE)
#define KOMLOG_DAY (24 * KOMLOG_HOUR)

/* Room for any number komlog_format_f64 writes, with its NUL. */
#define KOMLOG_F64_BUF 400

/* A borrowed, not NUL-terminated UTF-8 string. */
typedef struct komlog_str_t {
    const char *ptr;
    size_t len;
} komlog_str_t;

/* One row of the window. */
typedef struct komlog_row_t {
    komlog_str_t uri;
    int64_t ts;
    bool is_datapoint;
    double datapoint;        /* when is_datapoint */
    komlog_str_t datasource; /* when !is_datapoint */
} komlog_row_t;

/* A decoded window: rows grouped by uri, ts ascending within a uri. */
typedef struct komlog_window_t {
    komlog_row_t *rows;
    size_t len;
} komlog_window_t;

/* The timestamp `delta` µs before `ts`, saturating at INT64_MIN. */
static inline int64_t komlog_before(int64_t ts, int64_t delta) {
    if (delta > 0 && ts < INT64_MIN + delta) return INT64_MIN;
    return ts - delta;
}

static inline bool komlog_str_eq(komlog_str_t a, const char *b, size_t b_len) {
    return a.len == b_len && (a.len == 0 || memcmp(a.ptr, b, a.len) == 0);
}

/* ------------------------------------------------------------ logging */

/* A line in the agent's log, printf-style. */
static inline void komlog_logv(komlog_impulse_host_level_t level, const char *fmt, va_list args) {
    char small[256];
    va_list copy;
    va_copy(copy, args);
    int n = vsnprintf(small, sizeof small, fmt, copy);
    va_end(copy);
    if (n < 0) return;
    char *text = small;
    if ((size_t)n >= sizeof small) {
        text = malloc((size_t)n + 1);
        if (!text) return;
        vsnprintf(text, (size_t)n + 1, fmt, args);
    }
    impulse_string_t message = {(uint8_t *)text, (size_t)n};
    komlog_impulse_host_log(level, &message);
    if (text != small) free(text);
}

static inline void komlog_log(komlog_impulse_host_level_t level, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    komlog_logv(level, fmt, args);
    va_end(args);
}

#define komlog_debug(...) komlog_log(KOMLOG_IMPULSE_HOST_LEVEL_DEBUG, __VA_ARGS__)
#define komlog_info(...) komlog_log(KOMLOG_IMPULSE_HOST_LEVEL_INFO, __VA_ARGS__)
#define komlog_warn(...) komlog_log(KOMLOG_IMPULSE_HOST_LEVEL_WARN, __VA_ARGS__)
#define komlog_error(...) komlog_log(KOMLOG_IMPULSE_HOST_LEVEL_ERROR, __VA_ARGS__)

/* ----------------------------------------------------- results, samples */

/* Set `*err` to a formatted message and return false: the value to return
 * from exports_impulse_on_update to fail the fire. */
static inline bool komlog_fail(impulse_string_t *err, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    va_list copy;
    va_copy(copy, args);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    char *text = n < 0 ? NULL : malloc((size_t)n + 1);
    if (text) vsnprintf(text, (size_t)n + 1, fmt, args);
    va_end(args);
    if (!text) {
        impulse_string_dup(err, "out of memory formatting an error");
        return false;
    }
    err->ptr = (uint8_t *)text;
    err->len = (size_t)n;
    return false;
}

/* Room for one more sample: capacity 4, then doubled at each power of two. */
static inline impulse_sample_t *komlog_next_sample(impulse_list_sample_t *out) {
    size_t len = out->len;
    if (len == 0 || (len >= 4 && (len & (len - 1)) == 0)) {
        size_t cap = len == 0 ? 4 : len * 2;
        impulse_sample_t *grown = realloc(out->ptr, cap * sizeof *grown);
        if (!grown) return NULL;
        out->ptr = grown;
    }
    return &out->ptr[out->len++];
}

/* Append a datapoint sample; the uri is copied. False when out of memory. */
static inline bool komlog_push_datapoint(impulse_list_sample_t *out, const char *uri, size_t uri_len,
                                         int64_t ts, double value) {
    impulse_sample_t *s = komlog_next_sample(out);
    if (!s) return false;
    impulse_string_dup_n(&s->uri, uri, uri_len);
    s->ts = ts;
    s->value.tag = KOMLOG_IMPULSE_TYPES_VALUE_DATAPOINT;
    s->value.val.datapoint = value;
    return true;
}

/* Append a datasource sample; uri and text are copied. */
static inline bool komlog_push_datasource(impulse_list_sample_t *out, const char *uri, size_t uri_len,
                                          int64_t ts, const char *text, size_t text_len) {
    impulse_sample_t *s = komlog_next_sample(out);
    if (!s) return false;
    impulse_string_dup_n(&s->uri, uri, uri_len);
    s->ts = ts;
    s->value.tag = KOMLOG_IMPULSE_TYPES_VALUE_DATASOURCE;
    impulse_string_dup_n(&s->value.val.datasource, text, text_len);
    return true;
}

/* ------------------------------------------------------------ numbers */

/* Write `x` as Rust's `{}` prints an f64 into buf (at least KOMLOG_F64_BUF
 * bytes): the shortest digits that read back as `x`, with no exponent
 * (1e21 -> "1000...0", 1e-7 -> "0.0000001"); 2.0 -> "2"; -0.0 -> "-0".
 * Returns buf. */
static inline char *komlog_format_f64(double x, char *buf) {
    if (isnan(x)) return strcpy(buf, "NaN");
    if (isinf(x)) return strcpy(buf, x > 0 ? "inf" : "-inf");
    char *p = buf;
    if (signbit(x)) *p++ = '-';
    double a = fabs(x);
    if (a == 0) {
        strcpy(p, "0");
        return buf;
    }
    /* The shortest precision whose %e text reads back as the same number. */
    char sci[40];
    for (int precision = 0; precision <= 17; precision++) {
        snprintf(sci, sizeof sci, "%.*e", precision, a);
        if (strtod(sci, NULL) == a) break;
    }
    /* sci = d[.ddd]e[+-]XX */
    char digits[24];
    size_t n = 0;
    const char *s = sci;
    for (; *s && *s != 'e'; s++) {
        if (*s >= '0' && *s <= '9') digits[n++] = *s;
    }
    int exponent = *s == 'e' ? atoi(s + 1) : 0;
    while (n > 1 && digits[n - 1] == '0') n--;
    int point = exponent + 1; /* digits before the decimal point */
    if (point <= 0) {
        *p++ = '0';
        *p++ = '.';
        for (int i = 0; i < -point; i++) *p++ = '0';
        memcpy(p, digits, n);
        p += n;
    } else if ((size_t)point >= n) {
        memcpy(p, digits, n);
        p += n;
        for (size_t i = n; i < (size_t)point; i++) *p++ = '0';
    } else {
        memcpy(p, digits, (size_t)point);
        p += point;
        *p++ = '.';
        memcpy(p, digits + point, n - (size_t)point);
        p += n - (size_t)point;
    }
    *p = '\0';
    return buf;
}

/* --------------------------------------------------------- parameters */

/* The raw text of parameter `name` (the first if repeated). */
static inline bool komlog_param(const impulse_context_t *ctx, const char *name, komlog_str_t *value) {
    size_t name_len = strlen(name);
    for (size_t i = 0; i < ctx->params.len; i++) {
        const impulse_tuple2_string_string_t *p = &ctx->params.ptr[i];
        if (p->f0.len == name_len && memcmp(p->f0.ptr, name, name_len) == 0) {
            value->ptr = (const char *)p->f1.ptr;
            value->len = p->f1.len;
            return true;
        }
    }
    return false;
}

typedef enum komlog_param_status_t {
    KOMLOG_PARAM_ABSENT = 0,
    KOMLOG_PARAM_OK = 1,
    KOMLOG_PARAM_ERROR = 2, /* *err is set */
} komlog_param_status_t;

static inline bool komlog_is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static inline bool komlog_ieq(const char *a, size_t n, const char *b) {
    if (strlen(b) != n) return false;
    for (size_t i = 0; i < n; i++) {
        char c = a[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != b[i]) return false;
    }
    return true;
}

/* Whether s (n bytes) follows Rust's f64 grammar (no hex, no underscores);
 * *special is set for inf/infinity/nan. */
static inline bool komlog_is_number(const char *s, size_t n, bool *special) {
    size_t i = 0;
    *special = false;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    if (komlog_ieq(s + i, n - i, "inf") || komlog_ieq(s + i, n - i, "infinity") ||
        komlog_ieq(s + i, n - i, "nan")) {
        *special = true;
        return true;
    }
    size_t int_digits = 0, frac_digits = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++, int_digits++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++, frac_digits++;
    }
    if (int_digits + frac_digits == 0) return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        size_t exp_digits = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++, exp_digits++;
        if (exp_digits == 0) return false;
    }
    return i == n;
}

/* Parameter `name` as a finite number (surrounding whitespace ignored).
 * KOMLOG_PARAM_ERROR sets *err to a message naming the parameter. */
static inline komlog_param_status_t komlog_param_f64(const impulse_context_t *ctx, const char *name,
                                                     double *value, impulse_string_t *err) {
    komlog_str_t raw;
    if (!komlog_param(ctx, name, &raw)) return KOMLOG_PARAM_ABSENT;
    const char *s = raw.ptr;
    size_t n = raw.len;
    while (n > 0 && komlog_is_space(*s)) s++, n--;
    while (n > 0 && komlog_is_space(s[n - 1])) n--;
    bool special = false;
    if (!komlog_is_number(s, n, &special)) {
        komlog_fail(err, "param `%s` is not a number: `%.*s`", name, (int)raw.len, raw.ptr);
        return KOMLOG_PARAM_ERROR;
    }
    double v = NAN;
    if (!special) {
        char *text = malloc(n + 1);
        if (!text) {
            komlog_fail(err, "out of memory reading param `%s`", name);
            return KOMLOG_PARAM_ERROR;
        }
        memcpy(text, s, n);
        text[n] = '\0';
        v = strtod(text, NULL);
        free(text);
    }
    if (!isfinite(v)) {
        komlog_fail(err, "param `%s` must be a finite number, got `%.*s`", name, (int)raw.len, raw.ptr);
        return KOMLOG_PARAM_ERROR;
    }
    *value = v;
    return KOMLOG_PARAM_OK;
}

/* ------------------------------------------------------------- window */

/* Little-endian reads at any alignment; every read is bounds-checked by the
 * callers through komlog__fits. */
static inline uint16_t komlog__u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t komlog__u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline int64_t komlog__i64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return (int64_t)v;
}
static inline double komlog__f64(const uint8_t *p) {
    int64_t bits = komlog__i64(p);
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* A flatbuffer inside buf[0..len). */
typedef struct komlog__fb_t {
    const uint8_t *buf;
    size_t len;
} komlog__fb_t;

static inline bool komlog__fits(komlog__fb_t fb, size_t pos, size_t n) {
    return pos <= fb.len && n <= fb.len - pos;
}

/* A table at pos; 0 on a bad offset. vt = its vtable position. */
typedef struct komlog__table_t {
    komlog__fb_t fb;
    size_t pos, vt, vt_len;
    bool ok;
} komlog__table_t;

static inline komlog__table_t komlog__table(komlog__fb_t fb, size_t pos) {
    komlog__table_t t = {fb, pos, 0, 0, false};
    if (!komlog__fits(fb, pos, 4)) return t;
    int32_t back = (int32_t)komlog__u32(fb.buf + pos);
    int64_t vt = (int64_t)pos - back;
    if (vt < 0 || !komlog__fits(fb, (size_t)vt, 4)) return t;
    t.vt = (size_t)vt;
    t.vt_len = komlog__u16(fb.buf + t.vt);
    t.ok = komlog__fits(fb, t.vt, t.vt_len);
    return t;
}

/* Offset of field `id` inside the table, 0 if absent. */
static inline size_t komlog__field(komlog__table_t t, size_t id) {
    size_t at = 4 + 2 * id;
    if (!t.ok || at + 2 > t.vt_len) return 0;
    return komlog__u16(t.fb.buf + t.vt + at);
}

static inline bool komlog__scalar(komlog__table_t t, size_t id, size_t size, uint64_t dflt, uint64_t *out) {
    size_t off = komlog__field(t, id);
    *out = dflt;
    if (off == 0) return true;
    if (!komlog__fits(t.fb, t.pos + off, size)) return false;
    uint64_t v = 0;
    for (size_t i = size; i > 0; i--) v = v << 8 | t.fb.buf[t.pos + off + i - 1];
    *out = v;
    return true;
}

/* Position of the object a reference field points to; false if absent/bad. */
static inline bool komlog__ref(komlog__table_t t, size_t id, size_t *target) {
    size_t off = komlog__field(t, id);
    if (off == 0 || !komlog__fits(t.fb, t.pos + off, 4)) return false;
    *target = t.pos + off + komlog__u32(t.fb.buf + t.pos + off);
    return *target < t.fb.len;
}

static inline komlog__table_t komlog__subtable(komlog__table_t t, size_t id) {
    size_t at;
    if (!komlog__ref(t, id, &at)) return (komlog__table_t){t.fb, 0, 0, 0, false};
    return komlog__table(t.fb, at);
}

static inline bool komlog__vector(komlog__table_t t, size_t id, size_t elem, size_t *start, size_t *count) {
    size_t at;
    *start = 0;
    *count = 0;
    if (!komlog__ref(t, id, &at)) return true;
    if (!komlog__fits(t.fb, at, 4)) return false;
    *count = komlog__u32(t.fb.buf + at);
    *start = at + 4;
    return elem == 0 || *count <= (t.fb.len - *start) / elem;
}

static inline komlog_str_t komlog__string(komlog__table_t t, size_t id) {
    size_t at;
    komlog_str_t s = {NULL, 0};
    if (!komlog__ref(t, id, &at) || !komlog__fits(t.fb, at, 4)) return s;
    size_t n = komlog__u32(t.fb.buf + at);
    if (!komlog__fits(t.fb, at + 4, n)) return s;
    s.ptr = (const char *)t.fb.buf + at + 4;
    s.len = n;
    return s;
}

/* Buffers per column of each Arrow type id (Schema.fbs `Type`); -1: unsupported. */
static inline int komlog__buffers(uint64_t type_id) {
    switch (type_id) {
    case 1: return 0;                                                      /* Null */
    case 2: case 3: case 6: case 7: case 8: case 9: case 10: case 11:      /* fixed width */
    case 15: case 18: return 2;
    case 4: case 5: case 19: case 20: return 3;                            /* (large) binary/utf8 */
    default: return -1;
    }
}

typedef struct komlog__column_t {
    size_t node, buffer;
    bool found;
} komlog__column_t;

enum { KOMLOG__URI, KOMLOG__TS, KOMLOG__DP, KOMLOG__DS, KOMLOG__COLUMNS };

static inline bool komlog__err(char *err, size_t err_size, const char *fmt, ...) {
    if (err && err_size) {
        va_list args;
        va_start(args, fmt);
        vsnprintf(err, err_size, fmt, args);
        va_end(args);
    }
    return false;
}

static inline bool komlog__schema(komlog__table_t schema, komlog__column_t *cols, char *err, size_t err_size) {
    static const char *names[KOMLOG__COLUMNS] = {"uri", "ts", "datapoint", "datasource"};
    size_t start, count;
    if (!schema.ok || !komlog__vector(schema, 1, 4, &start, &count))
        return komlog__err(err, err_size, "window is not a valid Arrow IPC stream: bad schema message");
    size_t buffer = 0;
    for (size_t i = 0; i < count; i++) {
        size_t at = start + 4 * i;
        komlog__table_t field = komlog__table(schema.fb, at + komlog__u32(schema.fb.buf + at));
        komlog_str_t name = komlog__string(field, 0);
        uint64_t type_id = 0;
        size_t children_start, children;
        if (!field.ok || !komlog__scalar(field, 2, 1, 0, &type_id) ||
            !komlog__vector(field, 5, 4, &children_start, &children))
            return komlog__err(err, err_size, "window is not a valid Arrow IPC stream: bad field %zu", i);
        int buffers = komlog__buffers(type_id);
        if (buffers < 0 || children > 0)
            return komlog__err(err, err_size, "window column `%.*s` has an unsupported type (nested or #%u)",
                               (int)name.len, name.ptr ? name.ptr : "", (unsigned)type_id);
        for (int c = 0; c < KOMLOG__COLUMNS; c++) {
            if (cols[c].found || !komlog_str_eq(name, names[c], strlen(names[c]))) continue;
            komlog__table_t detail = komlog__subtable(field, 3);
            uint64_t unit = 0, precision = 0;
            bool fits;
            if (c == KOMLOG__URI || c == KOMLOG__DS) {
                fits = type_id == 5;
            } else if (c == KOMLOG__TS) {
                komlog_str_t tz = komlog__string(detail, 1);
                fits = type_id == 10 && detail.ok && komlog__scalar(detail, 0, 2, 0, &unit) && unit == 2 &&
                       (komlog_str_eq(tz, "UTC", 3) || komlog_str_eq(tz, "+00:00", 6));
            } else {
                fits = type_id == 3 && detail.ok && komlog__scalar(detail, 0, 2, 0, &precision) && precision == 2;
            }
            if (!fits) {
                static const char *expected[KOMLOG__COLUMNS] = {"utf8", "timestamp[us, UTC]", "float64", "utf8"};
                return komlog__err(err, err_size, "window column `%s` has another type than %s", names[c],
                                   expected[c]);
            }
            cols[c] = (komlog__column_t){i, buffer, true};
        }
        buffer += (size_t)buffers;
    }
    for (int c = 0; c < KOMLOG__COLUMNS; c++) {
        if (!cols[c].found) return komlog__err(err, err_size, "window has no `%s` column", names[c]);
    }
    return true;
}

/* One Arrow buffer of a record batch, inside the body. */
typedef struct komlog__buf_t {
    const uint8_t *ptr;
    size_t len;
} komlog__buf_t;

static inline bool komlog__buffer(komlog__table_t batch, size_t buffers_at, size_t buffers, size_t i,
                                  komlog__fb_t body, komlog__buf_t *out) {
    if (i >= buffers) return false;
    const uint8_t *b = batch.fb.buf + buffers_at + 16 * i;
    int64_t offset = komlog__i64(b), length = komlog__i64(b + 8);
    if (offset < 0 || length < 0 || !komlog__fits(body, (size_t)offset, (size_t)length)) return false;
    out->ptr = body.buf + offset;
    out->len = (size_t)length;
    return true;
}

static inline bool komlog__bit(komlog__buf_t bits, size_t i) {
    return bits.ptr == NULL || (bits.ptr[i >> 3] >> (i & 7) & 1);
}

/* Rows of one record batch appended to w (w->rows has room). */
static inline bool komlog__batch(komlog__table_t batch, komlog__fb_t body, const komlog__column_t *cols,
                                 komlog_window_t *w, size_t *cap, char *err, size_t err_size) {
    uint64_t length = 0;
    size_t nodes_at, nodes, buffers_at, buffers;
    if (!batch.ok || !komlog__scalar(batch, 0, 8, 0, &length) || !komlog__vector(batch, 1, 16, &nodes_at, &nodes) ||
        !komlog__vector(batch, 2, 16, &buffers_at, &buffers))
        return komlog__err(err, err_size, "window is not a valid Arrow IPC stream: bad record batch");
    if (komlog__field(batch, 3) != 0)
        return komlog__err(err, err_size, "window batch is compressed; the contract has no compression");
    size_t n = (size_t)length;
    if (length > SIZE_MAX / sizeof(komlog_row_t) || n > body.len)
        return komlog__err(err, err_size, "window batch claims %llu rows", (unsigned long long)length);
    komlog__buf_t bufs[KOMLOG__COLUMNS][3];
    memset(bufs, 0, sizeof bufs);
    static const int counts[KOMLOG__COLUMNS] = {3, 2, 2, 3};
    for (int c = 0; c < KOMLOG__COLUMNS; c++) {
        if (cols[c].node >= nodes)
            return komlog__err(err, err_size, "window batch has fewer field nodes than columns");
        int64_t nulls = komlog__i64(batch.fb.buf + nodes_at + 16 * cols[c].node + 8);
        for (int b = 0; b < counts[c]; b++) {
            if (!komlog__buffer(batch, buffers_at, buffers, cols[c].buffer + (size_t)b, body, &bufs[c][b]))
                return komlog__err(err, err_size, "window batch buffer %zu is missing or outside the body",
                                   cols[c].buffer + (size_t)b);
        }
        if (nulls == 0) {
            bufs[c][0].ptr = NULL; /* all valid */
        } else if (c == KOMLOG__URI || c == KOMLOG__TS) {
            return komlog__err(err, err_size, "window column `%s` holds nulls", c == KOMLOG__URI ? "uri" : "ts");
        } else if (bufs[c][0].len * 8 < n) {
            return komlog__err(err, err_size, "window batch validity bitmap too short");
        }
    }
    if (n > 0 && (bufs[KOMLOG__TS][1].len < 8 * n || bufs[KOMLOG__DP][1].len < 8 * n || bufs[KOMLOG__URI][1].len < 4 * (n + 1) ||
        bufs[KOMLOG__DS][1].len < 4 * (n + 1)))
        return komlog__err(err, err_size, "window batch value buffer too short");
    if (w->len + n > *cap) {
        size_t want = w->len + n;
        komlog_row_t *grown = realloc(w->rows, want * sizeof *grown);
        if (!grown && want) return komlog__err(err, err_size, "out of memory decoding the window");
        w->rows = grown;
        *cap = want;
    }
    for (size_t i = 0; i < n; i++) {
        komlog_row_t *row = &w->rows[w->len + i];
        for (int c = 0; c < KOMLOG__COLUMNS; c += 3) { /* uri, datasource */
            komlog_str_t *dst = c == KOMLOG__URI ? &row->uri : &row->datasource;
            dst->ptr = NULL;
            dst->len = 0;
            if (!komlog__bit(bufs[c][0], i)) continue;
            int32_t start = (int32_t)komlog__u32(bufs[c][1].ptr + 4 * i);
            int32_t end = (int32_t)komlog__u32(bufs[c][1].ptr + 4 * i + 4);
            if (start < 0 || end < start || (size_t)end > bufs[c][2].len)
                return komlog__err(err, err_size, "window row %zu: bad string offsets", w->len + i);
            dst->ptr = (const char *)bufs[c][2].ptr + start;
            dst->len = (size_t)(end - start);
            if (!dst->ptr) dst->ptr = "";
        }
        row->ts = komlog__i64(bufs[KOMLOG__TS][1].ptr + 8 * i);
        row->is_datapoint = komlog__bit(bufs[KOMLOG__DP][0], i);
        row->datapoint = row->is_datapoint ? komlog__f64(bufs[KOMLOG__DP][1].ptr + 8 * i) : 0.0;
        bool has_text = row->datasource.ptr != NULL;
        if (row->is_datapoint == has_text)
            return komlog__err(err, err_size, "window row %zu (uri `%.*s`): %s", w->len + i, (int)row->uri.len,
                               row->uri.ptr, has_text ? "both datapoint and datasource are set"
                                                      : "neither datapoint nor datasource is set");
    }
    w->len += n;
    return true;
}

/* Check grouping, one kind per uri and ascending ts. */
static inline bool komlog__check_rows(const komlog_window_t *w, char *err, size_t err_size) {
    for (size_t i = 1; i < w->len; i++) {
        const komlog_row_t *prev = &w->rows[i - 1], *row = &w->rows[i];
        if (komlog_str_eq(prev->uri, row->uri.ptr, row->uri.len)) {
            if (prev->is_datapoint != row->is_datapoint)
                return komlog__err(err, err_size, "window uri `%.*s` holds both datapoint and datasource samples (row %zu)",
                                   (int)row->uri.len, row->uri.ptr, i);
            if (row->ts < prev->ts)
                return komlog__err(err, err_size, "window uri `%.*s`: ts %lld at row %zu comes before the previous ts %lld",
                                   (int)row->uri.len, row->uri.ptr, (long long)row->ts, i, (long long)prev->ts);
            continue;
        }
        for (size_t j = 0; j + 1 < i; j++) {
            if (komlog_str_eq(w->rows[j].uri, row->uri.ptr, row->uri.len))
                return komlog__err(err, err_size,
                                   "window rows of uri `%.*s` are not grouped together (it appears again at row %zu)",
                                   (int)row->uri.len, row->uri.ptr, i);
        }
    }
    return true;
}

/* Decode the window bytes into *w (free it with komlog_window_free). Empty
 * bytes are an empty window. On failure returns false with a message in err
 * (err_size bytes, e.g. 256) and leaves *w empty. */
static inline bool komlog_window_decode(const uint8_t *bytes, size_t len, komlog_window_t *w, char *err,
                                        size_t err_size) {
    w->rows = NULL;
    w->len = 0;
    if (len == 0) return true;
    komlog__fb_t data = {bytes, len};
    komlog__column_t cols[KOMLOG__COLUMNS];
    memset(cols, 0, sizeof cols);
    bool have_schema = false;
    size_t cap = 0, pos = 0;
    bool ok = true;
    while (ok && pos < len) {
        if (!komlog__fits(data, pos, 4)) {
            ok = komlog__err(err, err_size, "window is not a valid Arrow IPC stream: truncated message header");
            break;
        }
        int32_t meta_len = (int32_t)komlog__u32(bytes + pos);
        pos += 4;
        if (meta_len == -1) {
            if (!komlog__fits(data, pos, 4)) {
                ok = komlog__err(err, err_size, "window is not a valid Arrow IPC stream: truncated message header");
                break;
            }
            meta_len = (int32_t)komlog__u32(bytes + pos);
            pos += 4;
        }
        if (meta_len == 0) break; /* end of stream */
        if (meta_len < 0 || !komlog__fits(data, pos, (size_t)meta_len)) {
            ok = komlog__err(err, err_size, "window is not a valid Arrow IPC stream: truncated message");
            break;
        }
        komlog__fb_t meta = {bytes + pos, (size_t)meta_len};
        pos += (size_t)meta_len;
        komlog__table_t message = komlog__table(meta, komlog__u32(meta.buf));
        uint64_t header_type = 0, body_len = 0;
        if (!message.ok || !komlog__scalar(message, 1, 1, 0, &header_type) ||
            !komlog__scalar(message, 3, 8, 0, &body_len) || body_len > len - pos) {
            ok = komlog__err(err, err_size, "window is not a valid Arrow IPC stream: bad message");
            break;
        }
        komlog__fb_t body = {bytes + pos, (size_t)body_len};
        pos += (size_t)body_len;
        komlog__table_t header = komlog__subtable(message, 2);
        if (header_type == 1) {
            ok = komlog__schema(header, cols, err, err_size);
            have_schema = ok;
        } else if (header_type == 3) {
            ok = have_schema ? komlog__batch(header, body, cols, w, &cap, err, err_size)
                             : komlog__err(err, err_size, "window is not a valid Arrow IPC stream: record batch before the schema");
        } else if (header_type == 2) {
            ok = komlog__err(err, err_size, "window has a dictionary batch; the contract has no dictionaries");
        }
    }
    if (ok && !have_schema) ok = komlog__err(err, err_size, "window is not a valid Arrow IPC stream: no schema message");
    if (ok) ok = komlog__check_rows(w, err, err_size);
    if (!ok) {
        free(w->rows);
        w->rows = NULL;
        w->len = 0;
    }
    return ok;
}

static inline void komlog_window_free(komlog_window_t *w) {
    free(w->rows);
    w->rows = NULL;
    w->len = 0;
}

/* The rows of `uri`: [*first, *end). False when the window has none. */
static inline bool komlog_window_series(const komlog_window_t *w, const char *uri, size_t uri_len, size_t *first,
                                        size_t *end) {
    for (size_t i = 0; i < w->len; i++) {
        if (!komlog_str_eq(w->rows[i].uri, uri, uri_len)) continue;
        size_t j = i;
        while (j < w->len && komlog_str_eq(w->rows[j].uri, uri, uri_len)) j++;
        *first = i;
        *end = j;
        return true;
    }
    return false;
}

#endif /* KOMLOG_IMPULSE_H */
