/*
 * Heuristic ("simple") memory extraction, claim_type inference and the background claim list.
 *
 * CORE implements the extractor with five JavaScript regular expressions. This file reproduces
 * what those expressions match rather than embedding a regex engine: after normalisation the
 * text's only whitespace is single U+0020 spaces, which reduces every `\s+` in the patterns to
 * "one space" and makes a hand-written scan both exact and easy to read. Where the reasoning
 * depends on a property of JS (case folding in /i, toLowerCase, String.length) the comment says
 * so; tests/unit/ai/test_extract.c checks those cases against node.
 */
#include <engram/ai.h>

#include <string.h>

#include <engram/core.h>
#include <engram/json.h>

/* CORE keeps at most this many UTF-16 units of the memory text (text.slice(0, 2000)). */
#define MEMORY_TEXT_MAX_UNITS 2000
/* A text this long (UTF-16 units) or longer is never trivial. */
#define TRIVIAL_MAX_UNITS 40
/* POST /memories creates at most this many background claims. */
#define BACKGROUND_MAX_CLAIMS EG_AI_BACKGROUND_MAX
/* The simple extractor has five patterns and each yields at most one claim. */
#define SIMPLE_MAX_CLAIMS 5

static const char *const simple_tags[] = {"simple_mode"};

/* ---- character classes -------------------------------------------------------------------- */

/*
 * Returns the byte length of the JS whitespace character (the `\s` class, which is also what
 * String.prototype.trim removes) starting at p, or 0 if p does not start with one. n is the
 * number of bytes available. The set: TAB, LF, VT, FF, CR, SPACE, U+00A0, U+1680,
 * U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000 and U+FEFF. U+0085 is not in it.
 */
static size_t space_len(const unsigned char *p, size_t n)
{
    if (n == 0)
        return 0;
    if (p[0] == ' ' || (p[0] >= '\t' && p[0] <= '\r'))
        return 1;
    if (n >= 2 && p[0] == 0xc2 && p[1] == 0xa0)
        return 2;
    if (n < 3)
        return 0;
    if (p[0] == 0xe1 && p[1] == 0x9a && p[2] == 0x80) /* U+1680 */
        return 3;
    if (p[0] == 0xe2 && p[1] == 0x80) {
        if (p[2] <= 0x8a || p[2] == 0xa8 || p[2] == 0xa9 || p[2] == 0xaf)
            return 3; /* U+2000..U+200A, U+2028, U+2029, U+202F */
        return 0;
    }
    if (p[0] == 0xe2 && p[1] == 0x81 && p[2] == 0x9f) /* U+205F */
        return 3;
    if (p[0] == 0xe3 && p[1] == 0x80 && p[2] == 0x80) /* U+3000 */
        return 3;
    if (p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) /* U+FEFF */
        return 3;
    return 0;
}

/* Returns the byte length of the JS whitespace character that ends the n bytes at s, or 0. */
static size_t space_len_before(const unsigned char *s, size_t n)
{
    /* Valid UTF-8 lets us test each possible length: a lead byte is never a continuation. */
    if (n >= 1 && space_len(s + n - 1, 1) == 1)
        return 1;
    if (n >= 2 && space_len(s + n - 2, 2) == 2)
        return 2;
    if (n >= 3 && space_len(s + n - 3, 3) == 3)
        return 3;
    return 0;
}

/* String.prototype.trim over the bytes [*s, *s + *n). */
static void js_trim(const char **s, size_t *n)
{
    const unsigned char *p = (const unsigned char *)*s;
    size_t len = *n;
    size_t k;

    while ((k = space_len(p, len)) > 0) {
        p += k;
        len -= k;
    }
    while ((k = space_len_before(p, len)) > 0)
        len -= k;
    *s = (const char *)p;
    *n = len;
}

/* The JS `\w` class, which is also what `\b` tests. Bytes of non-ASCII characters are not in it. */
static bool is_word(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* The negated VALUE class [^.,!?\n]: the bytes that end a captured value. */
static bool ends_value(unsigned char c)
{
    return c == '.' || c == ',' || c == '!' || c == '?' || c == '\n';
}

/* [a-zA-Z ] under /i. Non-unicode /i never folds a non-ASCII character onto an ASCII one. */
static bool is_alpha_or_space(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == ' ';
}

static unsigned char ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/*
 * Byte length of the longest prefix of the n bytes at s (valid UTF-8) holding at most max_units
 * UTF-16 units. A four-byte character (a surrogate pair) that would straddle the limit is left
 * out entirely: JS slice() would keep its high surrogate, which UTF-8 cannot represent.
 */
static size_t utf16_prefix(const char *s, size_t n, size_t max_units)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t units = 0;
    size_t i = 0;

    while (i < n) {
        size_t bytes = p[i] < 0x80 ? 1 : p[i] < 0xe0 ? 2 : p[i] < 0xf0 ? 3 : 4;
        size_t need = bytes == 4 ? 2 : 1;

        if (units + need > max_units)
            break;
        units += need;
        i += bytes;
    }
    return i;
}

/* ---- normalisation and the trivial check ---------------------------------------------------- */

/*
 * CORE's `text.trim().replace(/\s+/g, " ")`: returns a new NUL-terminated string and its
 * length in *out_len. Dropping leading runs and emitting a separator only between two
 * non-space characters gives the same result as trimming first.
 */
static char *normalise(const char *text, size_t len, size_t *out_len)
{
    const unsigned char *p = (const unsigned char *)text;
    char *out = eg_malloc(len + 1);
    bool pending_space = false;
    size_t o = 0;
    size_t i = 0;

    while (i < len) {
        size_t k = space_len(p + i, len - i);

        if (k > 0) {
            pending_space = o > 0;
            i += k;
            continue;
        }
        if (pending_space) {
            out[o++] = ' ';
            pending_space = false;
        }
        out[o++] = (char)p[i++];
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

/*
 * CORE's `/^(ok|thanks|thank you|cool|nice|yes|no|yep|nope|hi|hello|hey)\b/.test(lower) &&
 * text.length < 40` on the normalised text t.
 *
 * toLowerCase maps exactly two non-ASCII characters to ASCII letters: U+0130 (capital I with dot)
 * becomes "i" + U+0307 and U+212A (Kelvin sign) becomes "k" (checked with node over every code
 * point). Everything else non-ASCII stays non-ASCII and so is a non-word character for `\b`. The
 * first few characters are lowered into a small buffer with that mapping, using 0x01 as a
 * stand-in for any non-word non-ASCII character so it can neither extend a word nor match the
 * space in "thank you".
 */
static bool is_trivial(const char *t, size_t n)
{
    static const char *const words[] = {"ok", "thanks", "thank you", "cool", "nice",  "yes",
                                        "no", "yep",    "nope",      "hi",   "hello", "hey"};
    const unsigned char *p = (const unsigned char *)t;
    unsigned char low[16];
    size_t lo = 0;
    size_t i = 0;

    if (eg_utf16_len(t, n) >= TRIVIAL_MAX_UNITS)
        return false;
    /* The longest word is 9 characters and \b needs one more; each step adds at most 2. */
    while (i < n && lo < 12) {
        if (p[i] < 0x80) {
            low[lo++] = ascii_lower(p[i]);
            i++;
        } else if (p[i] == 0xc4 && p[i + 1] == 0xb0) {
            low[lo++] = 'i';
            low[lo++] = 0x01; /* U+0307 COMBINING DOT ABOVE */
            i += 2;
        } else if (p[i] == 0xe2 && p[i + 1] == 0x84 && p[i + 2] == 0xaa) {
            low[lo++] = 'k';
            i += 3;
        } else {
            low[lo++] = 0x01;
            i += p[i] < 0xe0 ? 2 : p[i] < 0xf0 ? 3 : 4;
        }
    }
    for (size_t w = 0; w < EG_ARRAY_LEN(words); w++) {
        size_t wl = strlen(words[w]);

        if (wl <= lo && memcmp(low, words[w], wl) == 0 && (wl == lo || !is_word(low[wl])))
            return true;
    }
    return false;
}

/* ---- claims ------------------------------------------------------------------------------- */

/*
 * CORE's normalizePredicate: toLowerCase, delete everything outside [a-z0-9_ ], trim, turn
 * whitespace runs into "_". After the filter the only whitespace left is the ASCII space, and
 * the only non-ASCII characters whose lower case survives the filter are U+0130 (leaving "i")
 * and U+212A (leaving "k"). Returns a new string, possibly empty.
 */
static char *normalise_predicate(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    char *tmp = eg_malloc(n + 1);
    size_t t = 0;
    size_t i = 0;

    while (i < n) {
        unsigned char c = ascii_lower(p[i]);

        if (c < 0x80) {
            if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == ' ')
                tmp[t++] = (char)c;
            i++;
        } else if (c == 0xc4 && i + 1 < n && p[i + 1] == 0xb0) {
            tmp[t++] = 'i';
            i += 2;
        } else if (c == 0xe2 && i + 2 < n && p[i + 1] == 0x84 && p[i + 2] == 0xaa) {
            tmp[t++] = 'k';
            i += 3;
        } else {
            i++; /* any other byte of a non-ASCII character is deleted */
        }
    }

    /* Trim the spaces, then write runs of spaces as one "_" in place. */
    size_t b = 0;
    size_t e = t;
    size_t o = 0;
    bool in_space = false;

    while (b < e && tmp[b] == ' ')
        b++;
    while (e > b && tmp[e - 1] == ' ')
        e--;
    for (size_t k = b; k < e; k++) {
        char c = tmp[k]; /* read before the write below, which may land on tmp[k] */

        if (c != ' ')
            tmp[o++] = c;
        else if (!in_space)
            tmp[o++] = '_';
        in_space = c == ' ';
    }
    tmp[o] = '\0';
    return tmp;
}

/* Case-insensitive (ASCII, as JS /i outside unicode mode) equality of two byte strings. */
static bool ascii_case_equal(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && eg_ascii_caseeq(a, b, an);
}

/*
 * CORE's push(): normalises the predicate, trims the value, skips empty ones and a claim whose
 * predicate and lower-cased value repeat an earlier one. The simple patterns never produce two
 * equal predicates, so that last rule cannot trigger; ASCII folding is enough for it.
 */
static void push_claim(struct eg_ai_memory *m, const char *pred, size_t pred_len, const char *val,
                       size_t val_len, const char *type, double confidence)
{
    char *p = normalise_predicate(pred, pred_len);

    js_trim(&val, &val_len);
    if (p[0] == '\0' || val_len == 0)
        goto skip;
    for (size_t i = 0; i < m->claim_count; i++) {
        const struct eg_ai_claim *c = &m->claims[i];

        if (strcmp(c->predicate, p) == 0
            && ascii_case_equal(c->object_value, strlen(c->object_value), val, val_len))
            goto skip;
    }
    m->claims[m->claim_count++] = (struct eg_ai_claim){
        .predicate = p,
        .object_value = eg_strndup(val, val_len),
        .claim_type = type,
        .confidence = confidence,
    };
    return;
skip:
    eg_free(p);
}

/*
 * True when a phrase may start at pos. DECISIONS.md item 6: the start of the text or a
 * preceding character outside [A-Za-z0-9_] (CORE has no such check, so "Enemy name is Joe"
 * matched "my name is").
 */
static bool at_word_start(const char *t, size_t pos)
{
    return pos == 0 || !is_word((unsigned char)t[pos - 1]);
}

/*
 * Matches `phrase\s+` at pos (case-insensitively) and returns the index just past the
 * whitespace, or 0 when it does not match. In normalised text `\s+` is exactly one space.
 */
static size_t match_phrase(const char *t, size_t n, size_t pos, const char *phrase)
{
    size_t pl = strlen(phrase);

    if (pos + pl + 1 > n || !eg_ascii_caseeq(t + pos, phrase, pl) || t[pos + pl] != ' ')
        return 0;
    return pos + pl + 1;
}

/*
 * The VALUE capture `([^.,!?\n]+)` starting at v: returns its end, or v when it would be empty.
 * The class includes the space, so greed takes everything up to the next punctuation.
 */
static size_t value_end(const char *t, size_t n, size_t v)
{
    while (v < n && !ends_value((unsigned char)t[v]))
        v++;
    return v;
}

/*
 * `phrase\s+([^.,!?\n]+)` at its first (leftmost) match: a position where the phrase matches
 * but no value follows is passed over, as the regex engine would. Sets [*vb, *ve).
 */
static bool find_simple(const char *t, size_t n, const char *phrase, size_t *vb, size_t *ve)
{
    for (size_t pos = 0; pos < n; pos++) {
        size_t v;

        if (!at_word_start(t, pos))
            continue;
        v = match_phrase(t, n, pos, phrase);
        if (v == 0 || value_end(t, n, v) == v)
            continue;
        *vb = v;
        *ve = value_end(t, n, v);
        return true;
    }
    return false;
}

/*
 * `my favorite\s+([a-zA-Z ]+)\s+is\s+([^.,!?\n]+)` with X ending at the FIRST ` is ` that is
 * followed by a value (DECISIONS.md item 6; CORE's greedy X ran to the last one). This is the
 * lazy `([a-zA-Z ]+?)`: X grows one character at a time and stops at the first end that lets the
 * rest match. If X reaches a character outside [a-zA-Z ] no later end can work at this start.
 *
 * Whether X may end at e does not depend on where X started, so once a scan from q has failed
 * up to stop, every later start q' <= stop would retry a subset of the same ends and fail too.
 * Skipping those keeps the search linear; "my favorite my favorite ..." would otherwise make it
 * quadratic in the body size, and the extract route has no text length limit.
 */
static bool find_favorite(const char *t, size_t n, size_t *xb, size_t *xe, size_t *vb, size_t *ve)
{
    size_t failed_to = 0;

    for (size_t pos = 0; pos < n; pos++) {
        size_t q;
        size_t e;

        if (!at_word_start(t, pos))
            continue;
        q = match_phrase(t, n, pos, "my favorite");
        if (q == 0 || q <= failed_to)
            continue;
        for (e = q; e < n && is_alpha_or_space((unsigned char)t[e]); e++) {
            size_t v = match_phrase(t, n, e + 1, " is");

            if (v == 0 || value_end(t, n, v) == v)
                continue;
            *xb = q;
            *xe = e + 1;
            *vb = v;
            *ve = value_end(t, n, v);
            return true;
        }
        failed_to = e;
    }
    return false;
}

/* CORE's buildSimpleClaims: the five patterns in order, each contributing its first match. */
static void build_claims(struct eg_ai_memory *m, const char *t, size_t n)
{
    static const struct {
        const char *phrase;
        const char *predicate;
        const char *type;
        double confidence;
    } simple[] = {
        {"my name is", "name", "fact", 0.9},
        {"i live in", "lives_in", "fact", 0.85},
        {"i work at", "works_at", "fact", 0.85},
        {NULL, NULL, "preference", 0.85}, /* my favorite X is VALUE */
        {"i like", "likes", "preference", 0.7},
    };
    size_t vb;
    size_t ve;

    m->claims = eg_malloc(SIMPLE_MAX_CLAIMS * sizeof(*m->claims));
    m->claim_count = 0;
    for (size_t i = 0; i < EG_ARRAY_LEN(simple); i++) {
        if (simple[i].phrase != NULL) {
            if (find_simple(t, n, simple[i].phrase, &vb, &ve))
                push_claim(m, simple[i].predicate, strlen(simple[i].predicate), t + vb, ve - vb,
                           simple[i].type, simple[i].confidence);
            continue;
        }

        size_t xb;
        size_t xe;

        if (find_favorite(t, n, &xb, &xe, &vb, &ve)) {
            /* The predicate is "favorite_" + X before normalisation. */
            size_t plen = strlen("favorite_") + (xe - xb);
            char *pred = eg_malloc(plen);

            memcpy(pred, "favorite_", strlen("favorite_"));
            memcpy(pred + strlen("favorite_"), t + xb, xe - xb);
            push_claim(m, pred, plen, t + vb, ve - vb, simple[i].type, simple[i].confidence);
            eg_free(pred);
        }
    }
    if (m->claim_count == 0) {
        eg_free(m->claims);
        m->claims = NULL;
    }
}

/* ---- public API ----------------------------------------------------------------------------- */

void eg_ai_claims_free(struct eg_ai_claim *c, size_t count)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < count; i++) {
        eg_free(c[i].predicate);
        eg_free(c[i].object_value);
    }
    eg_free(c);
}

void eg_ai_extraction_free(struct eg_ai_extraction *x)
{
    if (x == NULL)
        return;
    for (size_t i = 0; i < x->count; i++) {
        eg_free(x->memories[i].text);
        eg_ai_claims_free(x->memories[i].claims, x->memories[i].claim_count);
    }
    eg_free(x->memories);
    x->memories = NULL;
    x->count = 0;
}

int eg_ai_extract_simple(const char *text, size_t len, bool force, struct eg_ai_extraction *out)
{
    struct eg_ai_memory *m;
    size_t n;
    char *t;

    out->memories = NULL;
    out->count = 0;
    if (memchr(text, '\0', len) != NULL)
        return EG_EPARSE;
    t = normalise(text, len, &n);
    if (n == 0 || (!force && is_trivial(t, n))) {
        eg_free(t);
        return 0;
    }

    m = eg_calloc(1, sizeof(*m));
    /* Claims come from the whole text; only the stored memory text is cut. */
    build_claims(m, t, n);
    m->text = eg_strndup(t, utf16_prefix(t, n, MEMORY_TEXT_MAX_UNITS));
    m->kind = m->claim_count > 0 ? "fact" : "note";
    m->importance = force ? 70 : 50;
    m->confidence = m->claim_count > 0 ? 0.75 : 0.6;
    m->is_temporal = false;
    m->visibility = "private";
    m->tags = simple_tags;
    m->tag_count = EG_ARRAY_LEN(simple_tags);
    eg_free(t);

    out->memories = m;
    out->count = 1;
    return 0;
}

static bool has_prefix(const char *s, size_t n, const char *prefix)
{
    size_t pl = strlen(prefix);

    return n >= pl && memcmp(s, prefix, pl) == 0;
}

const char *eg_ai_infer_claim_type(const char *predicate, size_t len)
{
    const char *p = predicate;
    size_t n = len;

    js_trim(&p, &n);
    if (n == 0)
        return "fact";
    if (has_prefix(p, n, "favorite_") || has_prefix(p, n, "likes_")
        || has_prefix(p, n, "dislikes_"))
        return "preference";
    for (size_t i = 0; i + 4 <= n; i++) {
        if (memcmp(p + i, "goal", 4) == 0)
            return "goal";
    }
    if (has_prefix(p, n, "wants_"))
        return "goal";
    if (has_prefix(p, n, "did_") || has_prefix(p, n, "event_"))
        return "event";
    return "fact";
}

/* lower(predicate) + "::" + lower(object), the key POST /memories dedupes on. A new string. */
static char *dedupe_key(const char *p, size_t pn, const char *o, size_t on)
{
    char *k = eg_malloc(pn + 2 + on + 1);
    size_t i;

    for (i = 0; i < pn; i++)
        k[i] = (char)ascii_lower((unsigned char)p[i]);
    k[pn] = ':';
    k[pn + 1] = ':';
    for (i = 0; i < on; i++)
        k[pn + 2 + i] = (char)ascii_lower((unsigned char)o[i]);
    k[pn + 2 + on] = '\0';
    return k;
}

int eg_ai_claims_collect(const struct eg_ai_extraction *x, struct eg_ai_claim **out, size_t *count)
{
    struct eg_ai_claim *res = NULL;
    char *keys[BACKGROUND_MAX_CLAIMS];
    size_t kept = 0;

    /*
     * CORE filters the whole list and then keeps the first 20; stopping once 20 are kept
     * yields the same claims.
     */
    for (size_t i = 0; i < x->count && kept < BACKGROUND_MAX_CLAIMS; i++) {
        const struct eg_ai_memory *m = &x->memories[i];

        for (size_t j = 0; j < m->claim_count && kept < BACKGROUND_MAX_CLAIMS; j++) {
            const struct eg_ai_claim *c = &m->claims[j];
            const char *p = c->predicate != NULL ? c->predicate : "";
            const char *o = c->object_value != NULL ? c->object_value : "";
            size_t pn = strlen(p);
            size_t on = strlen(o);
            bool dup = false;
            char *key;

            js_trim(&p, &pn);
            js_trim(&o, &on);
            if (pn == 0 || on == 0)
                continue;
            key = dedupe_key(p, pn, o, on);
            for (size_t k = 0; k < kept && !dup; k++)
                dup = strcmp(keys[k], key) == 0;
            if (dup) {
                eg_free(key);
                continue;
            }
            if (res == NULL)
                res = eg_malloc(BACKGROUND_MAX_CLAIMS * sizeof(*res));
            keys[kept] = key;
            res[kept++] = (struct eg_ai_claim){
                .predicate = eg_strndup(p, pn),
                .object_value = eg_strndup(o, on),
                .claim_type =
                    (c->claim_type != NULL && c->claim_type[0] != '\0') ? c->claim_type : NULL,
                .confidence = c->confidence,
            };
        }
    }
    for (size_t k = 0; k < kept; k++)
        eg_free(keys[k]);
    *out = res;
    *count = kept;
    return 0;
}

int eg_ai_background_claims(const char *text, size_t len, struct eg_ai_claim **out, size_t *count)
{
    struct eg_ai_extraction x;
    int rc;

    *out = NULL;
    *count = 0;
    rc = eg_ai_extract_simple(text, len, true, &x);
    if (rc < 0)
        return rc;
    rc = eg_ai_claims_collect(&x, out, count);
    eg_ai_extraction_free(&x);
    return rc;
}
