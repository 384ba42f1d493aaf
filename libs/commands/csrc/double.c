/*
 * Doubles as Redis 7.0 reads and prints them (sorted-set scores, weights, ranges).
 *
 * Redis parses scores with strtod, which accepts forms Rust's parser does not (hex floats,
 * "infinity", leading '+'), and prints them with "%.17g". Both live here, compiled by
 * build.rs, so replies match Redis byte for byte.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses `len` bytes with strtod, by one of three sets of rules (`mode`):
 * 1: getDoubleFromObject's (not empty, no leading space, the whole input consumed, no
 *    overflow or underflow to zero, no NaN);
 * 0: a score range's (parsing stops at a NUL byte like C strings do, and must reach it;
 *    overflow is infinity; only NaN is refused);
 * 2: SORT's (as 0, and any ERANGE, overflow or underflow, is refused).
 * Returns 1 on success. */
int zankv_parse_double(const char *s, size_t len, int mode, double *out) {
    char small[256];
    char *buf = len < sizeof(small) ? small : malloc(len + 1);
    char *end;
    double v;
    int ok;
    if (buf == NULL) return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    v = strtod(buf, &end);
    if (mode == 1) {
        ok = len > 0 && !isspace((unsigned char)buf[0]) && (size_t)(end - buf) == len &&
             !(errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL || v == 0)) && !isnan(v);
    } else {
        ok = *end == '\0' && !isnan(v) && !(mode == 2 && errno == ERANGE);
    }
    if (buf != small) free(buf);
    if (ok) *out = v;
    return ok;
}

/* Writes `d` as "%.17g" (Redis's addReplyDouble; infinities as "inf"/"-inf") into `out`.
 * Returns the length written. */
int zankv_format_double(double d, char *out, size_t out_len) {
    if (isinf(d)) return snprintf(out, out_len, "%s", d > 0 ? "inf" : "-inf");
    return snprintf(out, out_len, "%.17g", d);
}

/* Formats d as printf's "%.<precision>g" (Lua's and lua-cjson's number format). */
int zankv_format_double_g(double d, int precision, char *out, size_t out_len) {
    return snprintf(out, out_len, "%.*g", precision, d);
}

/* Formats d as printf's "%.<precision>f" (GEODIST's "%.4f"; GEOPOS's coordinates, which
 * Redis prints as "%.17Lf" of the same value as a long double: the same digits). */
int zankv_format_double_f(double d, int precision, char *out, size_t out_len) {
    return snprintf(out, out_len, "%.*f", precision, d);
}
