-- 0006_search_rank_index: search and writes that stay fast on large subjects.
-- Only engram's additions change; CORE's tables and columns are not altered. Runs inside one
-- transaction.

-- The subject's active memories in the order search answers in (importance, then newest).
-- Search (src/api/memories_read.c) first reads the best 500 of them and keeps the matches; for
-- a word in 9 % of a 10k-memory subject that is 0.6 ms instead of 33 ms through the trigram
-- index, which matches the word among every tenant's rows. Building it on a large existing
-- table blocks writes to memories until it finishes (no CONCURRENTLY inside a transaction).
CREATE INDEX IF NOT EXISTS idx_memories_subject_rank
    ON memories (project_id, subject_id, importance DESC, created_at DESC)
    WHERE is_deleted = false AND status = 'active';

-- The two GIN indexes over memories.text (CORE's full-text idx_memories_text_trgm and 0002's
-- trigram idx_memories_text_ilike) take new entries into a pending list that the insert which
-- overflows it merges into the index, inside that insert. At the default 4 MB limit that merge
-- made single creates take 150-900 ms (log_min_duration_statement, 16 writers); a 256 kB list
-- bounds each merge to a sixteenth of that work (the longest creates: about 110 ms on the same,
-- very busy, machine), at the same total cost. fastupdate off removes the merges but cost 70 %
-- more database CPU per create. A storage parameter only: no client can see it.
ALTER INDEX IF EXISTS idx_memories_text_trgm SET (gin_pending_list_limit = 256);
ALTER INDEX IF EXISTS idx_memories_text_ilike SET (gin_pending_list_limit = 256);
