/*
 * JSON output that matches CORE's JavaScript byte for byte, a limited jansson decoder, and
 * UTF-8 helpers. See include/engram/json.h for the contracts.
 */
#include <engram/json.h>

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <engram/core.h>

/* ---- numbers ------------------------------------------------------------------------------ */

/* A decimal 0.d[0]d[1]..d[k-1] x 10^n, the form ECMA-262 Number::toString describes. */
struct decimal {
    char d[20];
    int k;
    int n;
};

/*
 * Rounds v (positive, finite) correctly to p significant digits; glibc's printf is exact. This
 * and decimal_value assume the "C" locale's '.' decimal point: engram never calls setlocale.
 */
static void decimal_round(double v, int p, struct decimal *dec)
{
    char tmp[40];
    const char *q = tmp;

    /* tmp is "D.DDDDe+XX", or "De+XX" when p == 1; p <= 17 keeps it well inside tmp. */
    snprintf(tmp, sizeof(tmp), "%.*e", p - 1, v);
    dec->d[0] = *q++;
    dec->k = 1;
    if (*q == '.') {
        for (q++; *q != 'e'; q++)
            dec->d[dec->k++] = *q;
    }
    dec->n = (int)strtol(q + 1, NULL, 10) + 1;
}

static double decimal_value(const struct decimal *dec)
{
    char tmp[40];

    snprintf(tmp, sizeof(tmp), "0.%.*se%d", dec->k, dec->d, dec->n);
    return strtod(tmp, NULL);
}

/* Moves dec to the adjacent decimal with the same digit count, up or down. */
static void decimal_step(struct decimal *dec, bool is_up)
{
    int i;

    if (is_up) {
        for (i = dec->k - 1; i >= 0 && dec->d[i] == '9'; i--)
            dec->d[i] = '0';
        if (i >= 0) {
            dec->d[i]++;
        } else {
            /* 0.999 -> 1.000: one more decade, same digit count. */
            dec->d[0] = '1';
            dec->n++;
        }
        return;
    }
    for (i = dec->k - 1; i >= 0 && dec->d[i] == '0'; i--)
        dec->d[i] = '9';
    dec->d[i]--; /* i >= 0: the leading digit of a non-zero decimal is never 0 */
    if (dec->d[0] == '0') {
        /*
         * 0.1000 x 10^n went to 0.0999 x 10^n, but below 10^(n-1) the grid of k-digit numbers
         * is ten times finer, so the neighbour is 0.9999 x 10^(n-1).
         */
        memmove(dec->d, dec->d + 1, (size_t)dec->k - 1);
        dec->d[dec->k - 1] = '9';
        dec->n--;
    }
}

/*
 * Finds the shortest decimal that reads back as v, and of those the closest to v, as ECMA-262
 * requires. For each digit count p, the decimals that round-trip form an interval around v, so
 * if any p-digit decimal round-trips, either the correctly rounded one does or its neighbour on
 * the other side of v does.
 *
 * For normal doubles, half an ulp is below half the spacing of 15-digit decimals, so every
 * round-tripping decimal of at most 15 digits equals the 15-digit rounding of v: trying p = 15
 * first and dropping trailing zeros finds the shortest in one step. Subnormals have fewer
 * significant bits (5e-324 is one digit), so they search from p = 1.
 */
static void shortest_decimal(double v, struct decimal *dec)
{
    int p;

    for (p = v >= DBL_MIN ? 15 : 1; p <= 17; p++) {
        double r;
        struct decimal other;

        decimal_round(v, p, dec);
        r = decimal_value(dec);
        if (r == v)
            break;
        other = *dec;
        decimal_step(&other, r < v);
        if (decimal_value(&other) == v) {
            *dec = other;
            break;
        }
    }
    /* p == 17 always round-trips, so the loop ends with a match. */
    while (dec->k > 1 && dec->d[dec->k - 1] == '0')
        dec->k--;
}

size_t eg_json_fmt_number(char out[EG_JSON_NUMBER_MAX], double v)
{
    struct decimal dec;
    size_t len = 0;
    int k;
    int n;
    int i;

    if (isnan(v) || isinf(v)) {
        memcpy(out, "null", 5);
        return 4;
    }
    if (v == 0) { /* both zeros: String(-0) is "0" */
        memcpy(out, "0", 2);
        return 1;
    }
    if (v < 0) {
        out[len++] = '-';
        v = -v;
    }
    shortest_decimal(v, &dec);
    k = dec.k;
    n = dec.n;
    /* The four cases of ECMA-262 Number::toString, in order. */
    if (k <= n && n <= 21) {
        memcpy(out + len, dec.d, (size_t)k);
        len += (size_t)k;
        for (i = k; i < n; i++)
            out[len++] = '0';
    } else if (0 < n && n <= 21) {
        memcpy(out + len, dec.d, (size_t)n);
        len += (size_t)n;
        out[len++] = '.';
        memcpy(out + len, dec.d + n, (size_t)(k - n));
        len += (size_t)(k - n);
    } else if (-6 < n && n <= 0) {
        out[len++] = '0';
        out[len++] = '.';
        for (i = n; i < 0; i++)
            out[len++] = '0';
        memcpy(out + len, dec.d, (size_t)k);
        len += (size_t)k;
    } else {
        out[len++] = dec.d[0];
        if (k > 1) {
            out[len++] = '.';
            memcpy(out + len, dec.d + 1, (size_t)(k - 1));
            len += (size_t)(k - 1);
        }
        len += (size_t)snprintf(out + len, EG_JSON_NUMBER_MAX - len, "e%c%d",
                                n - 1 >= 0 ? '+' : '-', abs(n - 1));
    }
    out[len] = '\0';
    return len;
}

/* ---- strings ------------------------------------------------------------------------------ */

int eg_json_put_string(struct eg_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0; /* start of the bytes not yet copied */
    size_t i;
    int rc;

    rc = eg_buf_putc(b, '"');
    for (i = 0; rc == 0 && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t esc_len = 2;

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\t': esc[1] = 't'; break;
        case '\n': esc[1] = 'n'; break;
        case '\f': esc[1] = 'f'; break;
        case '\r': esc[1] = 'r'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            esc_len = 6;
            break;
        }
        rc = eg_buf_append(b, s + run, i - run);
        if (rc == 0)
            rc = eg_buf_append(b, esc, esc_len);
        run = i + 1;
    }
    if (rc == 0)
        rc = eg_buf_append(b, s + run, n - run);
    if (rc == 0)
        rc = eg_buf_putc(b, '"');
    return rc;
}

/* ---- writer ------------------------------------------------------------------------------- */

static void jw_put(struct eg_jw *jw, const char *p, size_t n)
{
    int rc;

    if (jw->err != 0)
        return;
    rc = eg_buf_append(jw->b, p, n);
    if (rc < 0)
        jw->err = rc;
}

/* Writes the comma a new member needs, if any. Returns false once an error is set. */
static bool jw_member(struct eg_jw *jw)
{
    uint64_t bit;

    if (jw->err != 0)
        return false;
    if (jw->depth == 0)
        return true;
    bit = UINT64_C(1) << (jw->depth - 1);
    if (jw->need_comma_bits & bit)
        jw_put(jw, ",", 1);
    jw->need_comma_bits |= bit;
    return jw->err == 0;
}

/* Prepares for a value: after a key it is the member's second half, so no comma. */
static bool jw_value_start(struct eg_jw *jw)
{
    if (jw->err != 0)
        return false;
    if (jw->is_after_key) {
        jw->is_after_key = false;
        return true;
    }
    return jw_member(jw);
}

static void jw_begin(struct eg_jw *jw, char open)
{
    if (!jw_value_start(jw))
        return;
    if (jw->depth >= EG_JW_MAX_DEPTH) {
        jw->err = EG_ELIMIT;
        return;
    }
    jw_put(jw, &open, 1);
    jw->depth++;
    jw->need_comma_bits &= ~(UINT64_C(1) << (jw->depth - 1));
}

static void jw_end(struct eg_jw *jw, char close)
{
    if (jw->err != 0)
        return;
    if (jw->depth == 0 || jw->is_after_key) {
        jw->err = EG_EPARSE;
        return;
    }
    jw_put(jw, &close, 1);
    jw->depth--;
}

static void jw_keyn(struct eg_jw *jw, const char *key, size_t n)
{
    int rc;

    if (jw->is_after_key && jw->err == 0)
        jw->err = EG_EPARSE; /* two keys in a row */
    if (!jw_member(jw))
        return;
    rc = eg_json_put_string(jw->b, key, n);
    if (rc < 0) {
        jw->err = rc;
        return;
    }
    jw_put(jw, ":", 1);
    jw->is_after_key = true;
}

void eg_jw_init(struct eg_jw *jw, struct eg_buf *b)
{
    jw->b = b;
    jw->depth = 0;
    jw->need_comma_bits = 0;
    jw->is_after_key = false;
    jw->err = 0;
}

void eg_jw_obj_begin(struct eg_jw *jw)
{
    jw_begin(jw, '{');
}

void eg_jw_obj_end(struct eg_jw *jw)
{
    jw_end(jw, '}');
}

void eg_jw_arr_begin(struct eg_jw *jw)
{
    jw_begin(jw, '[');
}

void eg_jw_arr_end(struct eg_jw *jw)
{
    jw_end(jw, ']');
}

void eg_jw_key(struct eg_jw *jw, const char *key)
{
    jw_keyn(jw, key, strlen(key));
}

void eg_jw_str(struct eg_jw *jw, const char *s, size_t n)
{
    int rc;

    if (!jw_value_start(jw))
        return;
    rc = eg_json_put_string(jw->b, s, n);
    if (rc < 0)
        jw->err = rc;
}

void eg_jw_cstr(struct eg_jw *jw, const char *s)
{
    if (s == NULL)
        eg_jw_null(jw);
    else
        eg_jw_str(jw, s, strlen(s));
}

void eg_jw_num(struct eg_jw *jw, double v)
{
    char tmp[EG_JSON_NUMBER_MAX];
    size_t n = eg_json_fmt_number(tmp, v);

    eg_jw_raw(jw, tmp, n);
}

void eg_jw_int(struct eg_jw *jw, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%" PRId64, v);

    eg_jw_raw(jw, tmp, (size_t)n);
}

void eg_jw_bool(struct eg_jw *jw, bool v)
{
    if (v)
        eg_jw_raw(jw, "true", 4);
    else
        eg_jw_raw(jw, "false", 5);
}

void eg_jw_null(struct eg_jw *jw)
{
    eg_jw_raw(jw, "null", 4);
}

void eg_jw_raw(struct eg_jw *jw, const char *s, size_t n)
{
    if (jw_value_start(jw))
        jw_put(jw, s, n);
}

/*
 * Recursion is bounded: jw_begin refuses to pass EG_JW_MAX_DEPTH and every level stops once an
 * error is set, so a deep (or even cyclic) jansson value costs at most 65 frames.
 */
void eg_jw_value(struct eg_jw *jw, const json_t *v)
{
    size_t i;

    if (v == NULL) {
        eg_jw_null(jw);
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        /* jansson's iterators take a non-const object although they do not modify it. */
        json_t *obj = (json_t *)v;
        const char *key;
        size_t key_len;
        json_t *member;

        eg_jw_obj_begin(jw);
        json_object_keylen_foreach(obj, key, key_len, member)
        {
            if (jw->err != 0)
                return;
            jw_keyn(jw, key, key_len);
            eg_jw_value(jw, member);
        }
        eg_jw_obj_end(jw);
        break;
    }
    case JSON_ARRAY:
        eg_jw_arr_begin(jw);
        for (i = 0; i < json_array_size(v) && jw->err == 0; i++)
            eg_jw_value(jw, json_array_get(v, i));
        eg_jw_arr_end(jw);
        break;
    case JSON_STRING: eg_jw_str(jw, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: eg_jw_int(jw, (int64_t)json_integer_value(v)); break;
    case JSON_REAL: eg_jw_num(jw, json_real_value(v)); break;
    case JSON_TRUE: eg_jw_bool(jw, true); break;
    case JSON_FALSE: eg_jw_bool(jw, false); break;
    case JSON_NULL: eg_jw_null(jw); break;
    }
}

int eg_jw_finish(struct eg_jw *jw)
{
    if (jw->err != 0)
        return jw->err;
    if (jw->depth != 0 || jw->is_after_key)
        return EG_EPARSE;
    return 0;
}

/* ---- decoding ----------------------------------------------------------------------------- */

static bool is_json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void set_err(struct eg_json_err *err, int code, size_t position, const char *text)
{
    err->code = code;
    err->position = position;
    snprintf(err->text, sizeof(err->text), "%s", text);
}

/*
 * Counts bracket nesting outside strings, without recursion, so a hostile body is refused
 * before jansson's recursive descent sees it. Malformed text is left for jansson to report.
 */
static bool depth_ok(const char *s, size_t n, int max_depth, struct eg_json_err *err)
{
    bool is_in_string = false;
    int depth = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        char c = s[i];

        if (is_in_string) {
            if (c == '\\')
                i++; /* the escaped byte can't end the string */
            else if (c == '"')
                is_in_string = false;
            continue;
        }
        if (c == '"') {
            is_in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth) {
                char text[80];

                snprintf(text, sizeof(text), "nesting deeper than %d", max_depth);
                set_err(err, EG_JSON_EDEPTH, i, text);
                return false;
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return true;
}

static int map_jansson_error(const json_error_t *je)
{
    switch (json_error_code(je)) {
    case json_error_null_character:
    case json_error_null_byte_in_key: return EG_JSON_ENUL;
    case json_error_invalid_utf8: return EG_JSON_EUTF8;
    case json_error_numeric_overflow: return EG_JSON_ERANGE;
    case json_error_stack_overflow: return EG_JSON_EDEPTH;
    case json_error_invalid_syntax:
        /*
         * jansson 2.14 reports a lone surrogate escape ("\ud800") as a syntax error whose text
         * starts this way; test_json.c pins that text.
         */
        if (strncmp(je->text, "invalid Unicode", 15) == 0)
            return EG_JSON_EUTF8;
        return EG_JSON_ESYNTAX;
    default: return EG_JSON_ESYNTAX;
    }
}

json_t *eg_json_parse(const char *s, size_t n, int max_depth, struct eg_json_err *err)
{
    struct eg_json_err scratch;
    json_error_t je;
    json_t *v;
    size_t i = 0;

    if (err == NULL)
        err = &scratch;
    set_err(err, EG_JSON_OK, 0, "");
    while (i < n && is_json_ws(s[i]))
        i++;
    if (i == n) {
        set_err(err, EG_JSON_EEMPTY, n, "empty input");
        return NULL;
    }
    if (!depth_ok(s, n, max_depth, err))
        return NULL;
    v = json_loadb(s, n, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &je);
    if (v != NULL)
        return v;
    /* je.text's last byte holds jansson's error code, so the %s copy stops before it. */
    set_err(err, map_jansson_error(&je), je.position > 0 ? (size_t)je.position : 0, je.text);
    return NULL;
}

/* ---- UTF-8 -------------------------------------------------------------------------------- */

bool eg_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < n) {
        unsigned char c = p[i];
        unsigned char lo = 0x80; /* bounds of the second byte (RFC 3629 §4) */
        unsigned char hi = 0xbf;
        size_t len;
        size_t j;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
        } else if (c == 0xe0) {
            len = 3;
            lo = 0xa0; /* overlong */
        } else if (c == 0xed) {
            len = 3;
            hi = 0x9f; /* surrogates */
        } else if (c >= 0xe1 && c <= 0xef) {
            len = 3;
        } else if (c == 0xf0) {
            len = 4;
            lo = 0x90; /* overlong */
        } else if (c >= 0xf1 && c <= 0xf3) {
            len = 4;
        } else if (c == 0xf4) {
            len = 4;
            hi = 0x8f; /* above U+10FFFF */
        } else {
            return false; /* continuation byte, 0xc0/0xc1 overlong lead, or 0xf5..0xff */
        }
        if (n - i < len || p[i + 1] < lo || p[i + 1] > hi)
            return false;
        for (j = 2; j < len; j++) {
            if ((p[i + j] & 0xc0) != 0x80)
                return false;
        }
        i += len;
    }
    return true;
}

size_t eg_utf16_len(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t units = 0;
    size_t i;

    /* Each lead byte starts one code unit; 4-byte sequences need a surrogate pair. */
    for (i = 0; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            units++;
        if (p[i] >= 0xf0)
            units++;
    }
    return units;
}

/*
 * Decodes one code point the way the WHATWG UTF-8 decoder does: an ill-formed sequence yields
 * U+FFFD for its maximal subpart, and the byte that broke it is read again as a new start.
 * Returns the bytes consumed (at least 1, n must be > 0).
 */
size_t eg_utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    unsigned lo = 0x80;
    unsigned hi = 0xbf;
    size_t need;
    uint32_t v;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        need = 1;
        v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
        need = 2;
        v = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
        need = 3;
        v = c & 0x07;
    } else {
        *cp = 0xfffd;
        return 1;
    }
    for (size_t i = 1; i <= need; i++) {
        if (i >= n || s[i] < lo || s[i] > hi) {
            *cp = 0xfffd;
            return i;
        }
        v = (v << 6) | (s[i] & 0x3f);
        lo = 0x80;
        hi = 0xbf;
    }
    *cp = v;
    return need + 1;
}

/* Writes cp as UTF-8 into out (4 bytes available); returns the length. */
size_t eg_utf8_put(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}
