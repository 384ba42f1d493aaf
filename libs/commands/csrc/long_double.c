/*
 * Long-double arithmetic for INCRBYFLOAT and HINCRBYFLOAT.
 *
 * Redis parses both operands with strtold, adds them in the platform's long double (80-bit
 * extended precision on x86-64) and prints the sum with "%.17Lf" before trimming trailing
 * zeros. Rust has no long double, so the few lines that must round exactly like Redis live
 * here, compiled by build.rs.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZANKV_LD_MAX_CHARS 5120

/* Parses `len` bytes as a long double with Redis's rules: the whole input must be consumed,
 * no leading space, no NaN, no overflow or underflow to zero. Returns 1 on success. */
static int parse_ld(const char *s, size_t len, long double *out) {
    char buf[ZANKV_LD_MAX_CHARS];
    char *end;
    long double v;
    if (len == 0 || len >= sizeof(buf)) return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    v = strtold(buf, &end);
    if (isspace((unsigned char)buf[0])) return 0;
    if (*end != '\0' || (size_t)(end - buf) != len) return 0;
    if (errno == ERANGE && (v == HUGE_VALL || v == -HUGE_VALL || v == 0)) return 0;
    if (errno == EINVAL || isnan(v)) return 0;
    *out = v;
    return 1;
}

/* Validates a long double argument. Returns 1 when Redis would accept it. */
int zankv_ld_valid(const char *s, size_t len) {
    long double v;
    return parse_ld(s, len, &v);
}

/* Adds `incr` to `base` (NULL base means 0) and writes the human form of the sum to `out`.
 * Returns the length written, or -1 if base is not a float, -2 if incr is not a float,
 * -3 if the sum is NaN or infinite, -4 if the output does not fit. */
long zankv_ld_add(const char *base, size_t base_len, const char *incr, size_t incr_len,
                  char *out, size_t out_len) {
    long double a = 0, b, sum;
    int n;
    if (base != NULL && !parse_ld(base, base_len, &a)) return -1;
    if (!parse_ld(incr, incr_len, &b)) return -2;
    sum = a + b;
    if (isnan(sum) || isinf(sum)) return -3;
    n = snprintf(out, out_len, "%.17Lf", sum);
    if (n < 0 || (size_t)n + 1 > out_len) return -4;
    if (memchr(out, '.', (size_t)n) != NULL) {
        while (n > 0 && out[n - 1] == '0') n--;
        if (n > 0 && out[n - 1] == '.') n--;
    }
    if (n == 2 && out[0] == '-' && out[1] == '0') {
        out[0] = '0';
        n = 1;
    }
    return n;
}

/* Classifies a long double argument: 0 not a float, 1 finite, 2 infinite. */
int zankv_ld_classify(const char *s, size_t len) {
    long double v;
    if (!parse_ld(s, len, &v)) return 0;
    return isinf(v) ? 2 : 1;
}
