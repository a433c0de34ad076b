/*
 * engram ai: memory and claim extraction. This header covers the heuristic ("simple") extractor
 * CORE runs when no LLM is configured (core-contract.md §10, with DECISIONS.md item 6), the
 * claim_type inference CORE's store applies to a bare predicate (§9.2), and the claim list that
 * POST /memories derives in the background (§9.3).
 *
 * Everything here is pure C: no libuv, no libpq, no global state. Any thread may call it.
 *
 * Ownership (STYLE.md §4): every pointer argument is borrowed. Strings typed `char *` in the
 * structs below are owned by the struct and freed by its _free function; strings typed
 * `const char *` point to static storage and are never freed.
 */
#ifndef EG_AI_H
#define EG_AI_H

#include <stdbool.h>
#include <stddef.h>

/** Most claims background extraction keeps per memory (core-contract.md §9.3). */
#define EG_AI_BACKGROUND_MAX 20

/** One extracted claim: `predicate = object_value`. */
struct eg_ai_claim {
    char *predicate;        /* owned, NUL-terminated, never empty */
    char *object_value;     /* owned, NUL-terminated, never empty */
    const char *claim_type; /* static ("fact", "preference", ...); NULL when absent */
    double confidence;      /* 0..1 as the extractor assigned it */
};

/** One extracted memory, shaped as CORE's ExtractedMemory (§5.5). */
struct eg_ai_memory {
    char *text;                 /* owned, NUL-terminated */
    const char *kind;           /* static: "fact" or "note" in simple mode */
    int importance;             /* 0..100 */
    double confidence;          /* 0..1 */
    bool is_temporal;           /* always false in simple mode */
    const char *visibility;     /* static: "private" in simple mode */
    const char *const *tags;    /* static array of tag_count static strings */
    size_t tag_count;           /* number of entries in tags */
    struct eg_ai_claim *claims; /* owned array of claim_count claims; NULL when empty */
    size_t claim_count;
};

/** The result of one extraction: count memories, in output order. */
struct eg_ai_extraction {
    struct eg_ai_memory *memories; /* owned array; NULL when count is 0 */
    size_t count;
};

/**
 * Frees every memory and claim x owns and leaves x empty ({NULL, 0}). x itself is the caller's
 * memory; it may already be empty. NULL is accepted and ignored.
 */
void eg_ai_extraction_free(struct eg_ai_extraction *x);

/**
 * Runs CORE's heuristic extraction on the len bytes at text, which must be valid UTF-8 (the
 * caller validates). force is the route's `force` flag. Fills *out (caller's memory, previous
 * contents ignored) with zero or one memory; the caller releases it with eg_ai_extraction_free.
 *
 * The rules are core-contract.md §10, with two fixes from DECISIONS.md item 6: each phrase must
 * start at a word boundary, and in `my favorite X is VALUE` X ends at the first ` is `.
 * Zero memories come back when the normalised text is empty, or when it is trivial (`ok`,
 * `thanks`, ... and under 40 UTF-16 units) and force is false.
 *
 * One deliberate difference: CORE cuts the memory text with JS `slice(0, 2000)`, which can leave
 * a lone high surrogate when unit 2000 splits a pair. UTF-8 cannot hold half a pair, so that
 * character is dropped and the text ends after 1999 units.
 *
 * Returns 0, or EG_EPARSE (out left empty) when text contains a NUL byte, which the
 * NUL-terminated strings above could not carry; callers reject NUL earlier as invalid_text.
 */
int eg_ai_extract_simple(const char *text, size_t len, bool force, struct eg_ai_extraction *out);

/**
 * Returns the claim_type CORE's store infers for a predicate given without one (§9.2): the len
 * bytes at predicate are trimmed of JS whitespace, then matched case-sensitively. Returns one
 * of the static strings "fact", "preference", "goal" or "event". Never NULL.
 */
const char *eg_ai_infer_claim_type(const char *predicate, size_t len);

/**
 * Flattens the claims of every memory in x into a new array, as POST /memories does before
 * creating claims (§9.3): predicate and object_value are trimmed of JS whitespace, claims with
 * either one empty are dropped, duplicates of lower(predicate) + "::" + lower(object_value) are
 * dropped keeping the first, and at most 20 are kept. claim_type is copied when non-empty (the
 * pointer is shared with x, so it must be static storage, as everything this module produces
 * is); confidence is copied. Lower-casing folds ASCII letters only: JS toLowerCase would also fold
 * other scripts, which can matter only for claims that did not come from the simple extractor.
 *
 * *out receives a new array (NULL when *count is 0); free it with eg_ai_claims_free. Returns 0.
 */
int eg_ai_claims_collect(const struct eg_ai_extraction *x, struct eg_ai_claim **out, size_t *count);

/**
 * The claims POST /memories creates after storing a memory (§9.3): eg_ai_extract_simple with
 * force = true on the len bytes at text (valid UTF-8), then eg_ai_claims_collect. With the simple
 * extractor the dedupe and the limit of 20 never bite (it yields at most five claims, all with
 * distinct predicates) but they are applied as CORE does.
 *
 * *out receives a new array (NULL when *count is 0); free it with eg_ai_claims_free. Returns 0,
 * or EG_EPARSE (nothing allocated, *count 0) when text contains a NUL byte.
 */
int eg_ai_background_claims(const char *text, size_t len, struct eg_ai_claim **out, size_t *count);

/** Frees the count claims at c (their owned strings and the array). NULL is accepted. */
void eg_ai_claims_free(struct eg_ai_claim *c, size_t count);

#endif /* EG_AI_H */
