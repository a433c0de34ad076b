/*
 * engram JSON helpers: byte-for-byte reproduction of the JSON that CORE's JavaScript produces
 * (JSON.stringify, Number.prototype.toString), a small streaming writer for compact responses,
 * a jansson 2.14 decoder with limits, and UTF-8/UTF-16 helpers. core-contract.md §2.1 and §2.8
 * give the rules; INTEGRATION.md §2 records jansson's behaviour.
 *
 * Decoding notes (jansson 2.14, checked by tests/unit/core/test_json.c):
 * - Numbers are always decoded as reals (doubles), like JS. Integers past int64, such as
 *   9223372036854775808, become reals too; only overflow to infinity (1e400) fails. Underflow
 *   (1e-400) gives 0, as in JS.
 * - Duplicate keys: the last value wins and the key keeps the position of its first occurrence,
 *   which is what JSON.parse does. Objects iterate in insertion order.
 * - Unlike JSON.parse, "\u0000", lone surrogates ("\ud800") and invalid UTF-8 are rejected,
 *   since PostgreSQL text can hold none of them.
 *
 * All functions are pure (no libuv) and may run on any thread.
 */
#ifndef EG_JSON_H
#define EG_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct eg_buf;

/* ---- numbers and strings ------------------------------------------------------------------ */

/** Size of the out buffer eg_json_fmt_number needs; the longest output is 25 bytes + NUL. */
#define EG_JSON_NUMBER_MAX 32

/**
 * Formats v exactly like JS String(v) / JSON.stringify(v): the shortest digit string that reads
 * back as the same double (ties broken towards the closer decimal), in fixed notation when
 * 1e-7 < |v| < 1e21 and as `1e-7`, `1.5e+21` otherwise. Integral values have no decimal point,
 * -0 prints `0`, and NaN and the infinities print `null` (JSON.stringify's choice).
 * Writes into out, NUL-terminated, and returns the length (at most 25). Cannot fail.
 */
size_t eg_json_fmt_number(char out[EG_JSON_NUMBER_MAX], double v);

/**
 * Appends the n bytes at s as a quoted JSON string, escaped like JSON.stringify: `"` and `\`
 * get a backslash; `\b \t \n \f \r` use their short forms; other bytes below 0x20 become
 * `\u00xx` (lowercase hex); everything else, including `/`, U+2028 and U+2029, is copied raw.
 * s must be valid UTF-8 (validated at decode); it may contain NUL bytes, written as `\u0000`.
 * Returns 0, or EG_ELIMIT when b's ceiling is reached (b then holds a partial string).
 */
int eg_json_put_string(struct eg_buf *b, const char *s, size_t n);

/* ---- streaming writer ------------------------------------------------------------------------ */

/** Deepest nesting of arrays and objects an eg_jw accepts. */
#define EG_JW_MAX_DEPTH 64

/**
 * A writer for one compact JSON value into an eg_buf, inserting commas and colons itself.
 * The caller owns the struct (usually on the stack) and the buffer; the writer borrows b for its
 * lifetime and allocates nothing else. Calls follow JSON's grammar: inside an object, call
 * eg_jw_key before each value. Errors are sticky: after the first one every call does nothing,
 * and eg_jw_finish reports it, so a handler may write a whole response and check once.
 */
struct eg_jw {
    struct eg_buf *b;         /* read-only: the output, borrowed */
    int depth;                /* read-only: open containers */
    uint64_t need_comma_bits; /* private: bit d-1 set once the container at depth d has a member */
    bool is_after_key;        /* private: a key was written and its value is due */
    int err;                  /* read-only: 0 or the first error */
};

/** Prepares jw to append to b (whatever b already holds is kept). Cannot fail. */
void eg_jw_init(struct eg_jw *jw, struct eg_buf *b);
/** Opens an object. Nesting past EG_JW_MAX_DEPTH sets EG_ELIMIT. */
void eg_jw_obj_begin(struct eg_jw *jw);
/** Closes the innermost object. */
void eg_jw_obj_end(struct eg_jw *jw);
/** Opens an array. Nesting past EG_JW_MAX_DEPTH sets EG_ELIMIT. */
void eg_jw_arr_begin(struct eg_jw *jw);
/** Closes the innermost array. */
void eg_jw_arr_end(struct eg_jw *jw);
/** Writes the NUL-terminated key (escaped) and a colon; the next call must write its value. */
void eg_jw_key(struct eg_jw *jw, const char *key);
/** Writes the n bytes at s (valid UTF-8) as a string value. */
void eg_jw_str(struct eg_jw *jw, const char *s, size_t n);
/** Writes the NUL-terminated s as a string value, or null when s is NULL. */
void eg_jw_cstr(struct eg_jw *jw, const char *s);
/** Writes v as eg_json_fmt_number does (NaN and infinities become null). */
void eg_jw_num(struct eg_jw *jw, double v);
/**
 * Writes v in exact decimal. JS would lose precision past 2^53; callers that mimic a JS number
 * must stay below that, and CORE's int8 columns are strings anyway (core-contract.md §2.8).
 */
void eg_jw_int(struct eg_jw *jw, int64_t v);
/** Writes true or false. */
void eg_jw_bool(struct eg_jw *jw, bool v);
/** Writes null. */
void eg_jw_null(struct eg_jw *jw);
/**
 * Writes the n bytes at s unchanged as one value. s must already be compact, valid JSON in JS
 * style (for example, a body PostgreSQL built); nothing checks it.
 */
void eg_jw_raw(struct eg_jw *jw, const char *s, size_t n);
/**
 * Writes the jansson value v (borrowed) compactly in JS style: reals through eg_json_fmt_number,
 * jansson integers in exact decimal (as eg_jw_int), strings and keys escaped as JSON.stringify
 * does, object members in jansson's iteration order, which is insertion order in 2.14. Nesting
 * counts towards EG_JW_MAX_DEPTH, so a deeper value sets EG_ELIMIT. v == NULL writes null.
 */
void eg_jw_value(struct eg_jw *jw, const json_t *v);
/**
 * Returns 0 when the writer is balanced, else the first error: EG_ELIMIT when the buffer's
 * ceiling or EG_JW_MAX_DEPTH was reached; EG_EPARSE for misuse (a programmer error): containers
 * still open or closed once too often, or a key without its value.
 */
int eg_jw_finish(struct eg_jw *jw);

/* ---- decoding ---------------------------------------------------------------------------- */

/** Why eg_json_parse failed. */
enum eg_json_code {
    EG_JSON_OK = 0,
    EG_JSON_ESYNTAX, /* not JSON, including trailing garbage after the value */
    EG_JSON_EDEPTH,  /* arrays/objects nested deeper than max_depth */
    EG_JSON_ENUL,    /* a string or key contains \u0000 */
    EG_JSON_EUTF8,   /* invalid UTF-8 bytes, or a \u escape naming a lone surrogate */
    EG_JSON_ERANGE,  /* a number overflows a double (1e400) */
    EG_JSON_EEMPTY,  /* the text is empty or only JSON whitespace; CORE treats this as {} */
};

/** Error details from eg_json_parse. */
struct eg_json_err {
    int code;        /* one of enum eg_json_code */
    char text[160];  /* NUL-terminated English description, for logs (not for clients) */
    size_t position; /* byte offset in the input where the problem was found */
};

/**
 * Parses the n bytes at s (need not be NUL-terminated) as one JSON value of any type. Leading
 * and trailing JSON whitespace (space, tab, CR, LF) is allowed; anything else after the value is
 * an error. Every number becomes a json real. Nesting deeper than max_depth (counting arrays
 * and objects; `[]` has depth 1) fails with EG_JSON_EDEPTH before jansson runs, without
 * recursion; jansson's own limit is 2048.
 * Note that CORE trims the body with String.prototype.trim(), which removes more than JSON
 * whitespace (e.g. U+FEFF, U+00A0); callers reproducing that must trim first.
 * Returns a new reference (free with json_decref), or NULL with *err filled in (err may be
 * NULL if the caller needs no details).
 */
json_t *eg_json_parse(const char *s, size_t n, int max_depth, struct eg_json_err *err);

/* ---- UTF-8 ------------------------------------------------------------------------------- */

/**
 * Returns true when the n bytes at s are valid UTF-8: shortest-form sequences only, no
 * surrogates (U+D800..U+DFFF), nothing above U+10FFFF. NUL bytes are valid UTF-8.
 */
bool eg_utf8_valid(const char *s, size_t n);

/**
 * Returns the length in UTF-16 code units (JS String.prototype.length) of the n bytes at s,
 * which must be valid UTF-8: characters above U+FFFF count 2, all others 1.
 */
size_t eg_utf16_len(const char *s, size_t n);

/**
 * Decodes one code point from s (n > 0) as the WHATWG UTF-8 decoder does: an ill-formed sequence
 * yields U+FFFD for its maximal subpart. Returns the bytes consumed (at least 1).
 */
size_t eg_utf8_next(const unsigned char *s, size_t n, uint32_t *cp);
/** Writes cp as UTF-8 into out (4 bytes available); returns the length. */
size_t eg_utf8_put(char *out, uint32_t cp);

#endif /* EG_JSON_H */
