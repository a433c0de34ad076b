#!/usr/bin/env bash
# bench/api/run.sh — issue #3: the memory API under load, against the database's own limit.
#
# One self-contained run (about 5 minutes), everything on 127.0.0.1 in a temp dir: a throwaway
# PostgreSQL 15 cluster and Redis, `engramd migrate` + `engramd serve` (pinned to one CPU), then
#   1. writes: POST /api/v1/memories, wrk -c16, (a) a new subject per request, (b) one hot subject;
#   2. the database's limit for the same work, in the same run: pgbench running engram's write
#      transaction (memory INSERT with the duplicate check + event_outbox INSERT ... SELECT) as one
#      pipeline, 16 clients, for both subject patterns; the four alternate, RUNS rounds;
#   3. open loop at half the measured peak (bench/api/paced, C): p50/p99 at a fixed arrival rate;
#   4. reads: a subject with 10k memories, GET /memories?limit=50 and GET /memories/search?q=word;
#      engramd's own histograms over the same window give the server-side view (histdelta.py);
#   5. the sequencer: drain time for N outbox rows inserted with SQL; commit-to-sequenced and
#      POST-response-to-SSE-frame latency under a moderate open-loop write load.
# Results: appended to bench/results/api.md, latest run in bench/results/api.json.
# Every process started here is stopped at exit (trap); the temp dir is removed.
#
# Environment (all optional):
#   BENCH_DURATION=10s BENCH_WARMUP=3s BENCH_RUNS=3 BENCH_CONNECTIONS=16   write runs (wrk, pgbench)
#   BENCH_READ_DURATION=8s BENCH_OPEN_DURATION=8s                          read / open-loop runs
#   BENCH_OPEN_FRACTION=0.5             open-loop rate as a fraction of the median write peak
#   BENCH_LAT_RATE=<peak/4>             writes/s during the sequencer/SSE latency run
#   BENCH_LAT_DURATION=10               seconds of that run
#   BENCH_SEQ_ROWS=50000                outbox rows for the sequencer drain test
#   BENCH_READ_ROWS=10000               memories of the read subject
#   BENCH_PGBENCH_EXTENDED=1            also run pgbench -M extended (new subject; for information)
#   BENCH_POOL_SIZE=                    ENGRAM_DB_POOL_SIZE (empty: engramd's default)
#   BENCH_LOAD_CPUS=1 BENCH_SERVER_CPUS=0   taskset lists for wrk/pgbench/paced and for engramd
#   BENCH_ENGRAM_LOG_LEVEL=warn         engramd log level during the run
#   BENCH_RESULTS_DIR=bench/results     where api.md / api.json go
#   BENCH_GATE=1                        exit 3 if a target is missed
#   ENGRAMD=build/engramd               binary to test (default: build/, brought up to date with ninja)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PGBIN=/usr/lib/postgresql/15/bin
PY=/usr/bin/python3

DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-3s}
RUNS=${BENCH_RUNS:-3}
CONNS=${BENCH_CONNECTIONS:-16}
READ_DURATION=${BENCH_READ_DURATION:-8s}
OPEN_DURATION=${BENCH_OPEN_DURATION:-8s}
OPEN_FRACTION=${BENCH_OPEN_FRACTION:-0.5}
LAT_RATE=${BENCH_LAT_RATE:-}
LAT_DURATION=${BENCH_LAT_DURATION:-10}
SEQ_ROWS=${BENCH_SEQ_ROWS:-50000}
READ_ROWS=${BENCH_READ_ROWS:-10000}
PGBENCH_EXTENDED=${BENCH_PGBENCH_EXTENDED:-1}
POOL_SIZE=${BENCH_POOL_SIZE:-}
RESULTS=${BENCH_RESULTS_DIR:-$ROOT/bench/results}
LOG_LEVEL=${BENCH_ENGRAM_LOG_LEVEL:-warn}
PROJECT=bench
PGB_PROJECT=bench-pgb
NCPU=$(nproc)

log() { printf 'bench/api: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for c in make cc wrk pgbench taskset curl jq ss pgrep getconf redis-server redis-cli runuser; do
  command -v "$c" >/dev/null || die "$c not found (run ops/setup; pgbench is in postgresql-contrib)"
done

BENCH_NAME=api
# shellcheck source=bench/api/lib.sh
. "$HERE/lib.sh"

# ---------------------------------------------------------------- the run

START=$SECONDS
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
TAG=r$$
build_engramd
make -s -C "$HERE" paced >/dev/null || die "make -C bench/api failed (needs libuv1-dev)"
log "engramd $ENGRAMD; load on CPU '${LOAD_CPUS:-any}', engramd on CPU '${SERVER_CPUS:-any}', PostgreSQL unpinned"
start_pg
start_redis
start_engramd
PGB_WORDS="ARRAY['apple','river','stone','cloud','maple','violet','copper','harbor','meadow','lantern','pepper','silver','garden','window','thunder','orchid','marble','candle','forest','pillow','rocket','saddle','tunnel','velvet','walnut','yellow','zephyr','basket','cactus','dragon','falcon','glacier']"
: >"$TMP/runs.jsonl"

# One create through the API: 201, and the memory + outbox row only (no claims).
resp=$(curl -sS -m 5 -w '\n%{http_code}' -H 'content-type: application/json' -H "x-project-id: $PROJECT" \
  -d '{"subject_id":"probe","text":"note probe about apple river stone"}' "$BASE/api/v1/memories")
[ "$(tail -n1 <<<"$resp")" = 201 ] || die "POST /api/v1/memories: $resp"
[ "$(q "select count(*) from claims")" = 0 ] || die "the probe text produced claims"

log "writes: warm-up ($WARMUP each)"
run_wrk write_unique warmup "$WARMUP" write.lua BENCH_PROJECT=$PROJECT BENCH_TAG=$TAG-w BENCH_SUBJECT_MODE=unique
run_pgbench pgbench_unique warmup "$WARMUP" "'pgb-' || :r::text" prepared
log "writes: $RUNS rounds of engramd unique/hot subject and pgbench unique/hot subject, $DURATION each"
for r in $(seq 1 "$RUNS"); do
  run_wrk write_unique "$r" "$DURATION" write.lua BENCH_PROJECT=$PROJECT BENCH_TAG=$TAG-u$r BENCH_SUBJECT_MODE=unique
  run_pgbench pgbench_unique "$r" "$DURATION" "'pgb-' || :r::text" prepared
  run_wrk write_hot "$r" "$DURATION" write.lua BENCH_PROJECT=$PROJECT BENCH_TAG=$TAG-h$r BENCH_SUBJECT_MODE=hot
  run_pgbench pgbench_hot "$r" "$DURATION" "'pgb-hot'" prepared
  if [ "$PGBENCH_EXTENDED" = 1 ]; then
    run_pgbench pgbench_unique_ext "$r" "$DURATION" "'pgb-' || :r::text" extended
  fi
done
CLAIMS=$(q "select count(*) from claims")
DUPS=$(jq -s '[.[] | .status_200 // 0] | add' "$TMP/runs.jsonl")

# Open loop at OPEN_FRACTION of the median unique-subject peak.
PEAK=$(jq -s '[.[] | select(.scenario == "write_unique") | .rps] | sort | .[length/2|floor]' "$TMP/runs.jsonl")
OPEN_RATE=$(awk -v p="$PEAK" -v f="$OPEN_FRACTION" 'BEGIN { r = int(p * f); print (r < 1 ? 1 : r) }')
log "open loop: $OPEN_RATE writes/s ($OPEN_FRACTION x peak $PEAK), $RUNS x $OPEN_DURATION"
curl -fsS -m 5 "$BASE/metrics" >"$TMP/metrics-open-0.txt"
for r in $(seq 1 "$RUNS"); do
  run_paced write_open "$r" "$OPEN_RATE" "$(secs "$OPEN_DURATION")"
done
curl -fsS -m 5 "$BASE/metrics" >"$TMP/metrics-open-1.txt"
# The same window as engramd saw it: its request histogram, and its database batches (the
# round trip to PostgreSQL including the commit), without the load tool's own scheduling lag.
OPEN_SERVER=$("$PY" "$HERE/histdelta.py" "$TMP/metrics-open-0.txt" "$TMP/metrics-open-1.txt")

# Reads: one subject with READ_ROWS memories, one second apart, varied importance.
log "reads: $READ_ROWS memories in subject read-10k, $RUNS rounds of list and search, $READ_DURATION each"
q "INSERT INTO memories (id, project_id, subject_id, text, kind, importance, confidence, status,
     is_deleted, source_type, created_at, updated_at)
   SELECT 'mem_read_' || i, '$PROJECT', 'read-10k',
     'note ' || i || ' about ' || w[1 + i % 32] || ' ' || w[1 + (i / 32) % 32] || ' ' || w[1 + (i * 7) % 32],
     'fact', (i * 37) % 101, 0.9, 'active', false, 'explicit',
     now() - i * interval '1 second', now() - i * interval '1 second'
   FROM generate_series(1, $READ_ROWS) i, (SELECT $PGB_WORDS AS w) x; ANALYZE memories;" >/dev/null
LIST_PATH="/api/v1/memories?subject_id=read-10k&limit=50"
SEARCH_WORDS="river stone maple copper meadow silver thunder marble"
SEARCH_PATHS=$(for w in $SEARCH_WORDS; do printf '/api/v1/memories/search?subject_id=read-10k&q=%s|' "$w"; done)
SEARCH_PATHS=${SEARCH_PATHS%|}
LIST_N=$(curl -fsS -m 5 -H "x-project-id: $PROJECT" "$BASE$LIST_PATH" | jq '.data | length')
SEARCH_N=$(curl -fsS -m 5 -H "x-project-id: $PROJECT" "$BASE/api/v1/memories/search?subject_id=read-10k&q=river" | jq '.data | length')
LIST_BYTES=$(curl -sS -m 5 -o /dev/null -w '%{size_download}' -H "x-project-id: $PROJECT" "$BASE$LIST_PATH")
SEARCH_BYTES=$(curl -sS -m 5 -o /dev/null -w '%{size_download}' -H "x-project-id: $PROJECT" "$BASE/api/v1/memories/search?subject_id=read-10k&q=river")
[ "$LIST_N" = 50 ] || die "list returned $LIST_N rows, expected 50"
[ "${SEARCH_N:-0}" -gt 0 ] || die "search returned no rows"
run_wrk read_list warmup 2s read.lua BENCH_PROJECT=$PROJECT "BENCH_PATHS=$LIST_PATH"
run_wrk read_search warmup 2s read.lua BENCH_PROJECT=$PROJECT "BENCH_PATHS=$SEARCH_PATHS"
for r in $(seq 1 "$RUNS"); do
  run_wrk read_list "$r" "$READ_DURATION" read.lua BENCH_PROJECT=$PROJECT "BENCH_PATHS=$LIST_PATH"
  run_wrk read_search "$r" "$READ_DURATION" read.lua BENCH_PROJECT=$PROJECT "BENCH_PATHS=$SEARCH_PATHS"
done

# Plans behind the figures (kept in the report): the duplicate check of a create as engramd's
# prepared statement runs it once PostgreSQL switches to the generic plan, for the hot subject of
# the last round; and the lexical search of the read subject.
"${PSQL[@]}" >"$TMP/plans.txt" 2>&1 <<SQL || true
\echo '-- POST /api/v1/memories duplicate check (st_mem_insert), generic plan, subject hot-$TAG-h$RUNS:'
SELECT count(*) AS hot_subject_rows FROM memories WHERE project_id = '$PROJECT' AND subject_id = 'hot-$TAG-h$RUNS';
PREPARE mi(text,text,text,text,text,text,int,float8,bool,json,jsonb,text,bool) AS
INSERT INTO memories (id, project_id, subject_id, text, kind, visibility, importance, confidence, is_temporal, tags, metadata, status, superseded_by, is_deleted, source_type, last_reinforced_at)
SELECT \$1, \$2, \$3, \$4, \$5, \$6, \$7::int, \$8::float8, \$9::bool, ARRAY(SELECT json_array_elements_text(\$10::json)), \$11::jsonb, 'active', NULL, false, \$12, now()
WHERE NOT \$13::bool OR NOT EXISTS (SELECT 1 FROM memories d WHERE d.project_id = \$2 AND d.subject_id = \$3 AND d.is_deleted = false AND d.status = 'active'
AND md5(eg_norm_text(d.text)) = md5(eg_norm_text(\$4)) AND eg_norm_text(d.text) = eg_norm_text(\$4)) RETURNING id;
SET plan_cache_mode = force_generic_plan;
BEGIN;
EXPLAIN (ANALYZE, COSTS OFF, SUMMARY) EXECUTE mi('mem_plan_probe', '$PROJECT', 'hot-$TAG-h$RUNS', 'note plan probe', 'fact', 'private', 50, 0.95, false, '[]', '{}', 'explicit', true);
ROLLBACK;
RESET plan_cache_mode;
\echo '-- GET /api/v1/memories/search?subject_id=read-10k&q=river (custom plan, as engramd forces):'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY) WITH head AS MATERIALIZED (
  SELECT r.* FROM (SELECT m.id, m.text, m.kind, m.importance, m.is_temporal, m.created_at, m.confidence
    FROM memories m WHERE m.project_id = '$PROJECT' AND m.subject_id = 'read-10k' AND m.is_deleted = false
    AND m.status = 'active' ORDER BY m.importance DESC, m.created_at DESC LIMIT 500) r
  WHERE r.text ILIKE ANY ('{%river%}'::text[]) ORDER BY r.importance DESC, r.created_at DESC LIMIT 25),
hit AS (SELECT * FROM head WHERE (SELECT count(*) FROM head) >= 25
  UNION ALL (SELECT m.id, m.text, m.kind, m.importance, m.is_temporal, m.created_at, m.confidence
    FROM memories m WHERE m.project_id = '$PROJECT' AND m.subject_id = 'read-10k' AND m.is_deleted = false
    AND m.status = 'active' AND m.text ILIKE ANY ('{%river%}'::text[]) AND (SELECT count(*) FROM head) < 25
    ORDER BY m.importance DESC, m.created_at DESC LIMIT 25))
SELECT m.id, m.text, m.kind, m.importance, m.is_temporal, m.created_at, 0::double precision AS score,
  (0.25 * m.importance + 0.15 * m.confidence * 100)::double precision AS effective_score
FROM hit m ORDER BY m.importance DESC, m.created_at DESC;
SELECT count(*) AS table_rows, count(*) FILTER (WHERE text ILIKE '%river%') AS table_rows_matching_river FROM memories;
SQL

# Sequencer throughput: SEQ_ROWS outbox rows committed at once; time until all are in events.
log "sequencer: $SEQ_ROWS outbox rows inserted with SQL, waiting for the log (max 120 s)"
for _ in $(seq 1 100); do [ "$(q "select count(*) from event_outbox")" = 0 ] && break; sleep 0.1; done
cpu_begin
SEQ_JSON=$("${PSQL[@]}" -tA <<SQL
INSERT INTO event_outbox (project_id, subject_id, event_type, payload)
  SELECT 'bench-seq', 's' || i, 'memory.created',
    '{"id":"mem_seq_' || i || '","subject_id":"s' || i || '","text":"note ' || i || '","kind":"fact","visibility":"private","importance":50,"tags":[],"created_at":"2026-01-01T00:00:00.000Z"}'
  FROM generate_series(1, $SEQ_ROWS) i;
SELECT clock_timestamp() AS t_commit \gset
DO \$\$
DECLARE n bigint;
BEGIN
  FOR k IN 1..2400 LOOP  -- 50 ms polls, at most 120 s
    SELECT count(*) INTO n FROM events WHERE project_id = 'bench-seq';
    EXIT WHEN n >= $SEQ_ROWS;
    PERFORM pg_sleep(0.05);
  END LOOP;
END \$\$;
SELECT json_build_object(
  'rows', $SEQ_ROWS,
  'sequenced', count(*),
  'drain_s', extract(epoch FROM clock_timestamp() - :'t_commit'::timestamptz),
  'first_batch_after_commit_ms', 1000 * extract(epoch FROM min(sequenced_at) - :'t_commit'::timestamptz),
  'batches', count(DISTINCT sequenced_at),
  'span_first_to_last_batch_s', extract(epoch FROM max(sequenced_at) - min(sequenced_at)),
  'outbox_left', (SELECT count(*) FROM event_outbox WHERE project_id = 'bench-seq'))
FROM events WHERE project_id = 'bench-seq';
SQL
)
cpu_end
SEQ_JSON=$(jq -c '. + {requests: .sequenced, events_per_s: (if .drain_s > 0 then .sequenced / .drain_s else null end)}' <<<"$SEQ_JSON")
SEQ_JSON=$(cpu_json "$SEQ_JSON")
check_engramd
log "  sequencer: $(jq -r '"\(.sequenced) events in \(.drain_s*1000|floor) ms (\(.events_per_s|floor)/s, \(.batches) batches)"' <<<"$SEQ_JSON")"

# Commit-to-sequenced and POST-to-SSE latency under a moderate open-loop write load.
[ -n "$LAT_RATE" ] || LAT_RATE=$(awk -v p="$PEAK" 'BEGIN { r = int(p / 4); print (r < 1 ? 1 : r) }')
log "latency: $LAT_RATE writes/s for ${LAT_DURATION}s with one SSE subscriber"
LAT_PROJECT_SAVE=$PROJECT
PROJECT=bench-lat
run_paced write_sse 1 "$LAT_RATE" "$LAT_DURATION" --sse --csv "$TMP/lat.csv"
PROJECT=$LAT_PROJECT_SAVE
LAT_JSON=$("${PSQL[@]}" -tA <<SQL
CREATE TEMP TABLE lat (id text, sched_ms float8, sent_ms float8, resp_ms float8, sse_ms float8);
\copy lat FROM '$TMP/lat.csv' WITH (FORMAT csv, HEADER true)
WITH j AS (
  SELECT l.*, 1000 * extract(epoch FROM e.sequenced_at) AS seq_ms, 1000 * extract(epoch FROM e.created_at) AS created_ms
  FROM lat l JOIN events e ON e.project_id = 'bench-lat' AND e.event_type = 'memory.created'
   AND (e.payload::json ->> 'id') = l.id)
SELECT json_build_object(
  'writes', (SELECT count(*) FROM lat),
  'joined', count(*),
  'seq_minus_resp_p50_ms', percentile_cont(0.5) WITHIN GROUP (ORDER BY seq_ms - resp_ms),
  'seq_minus_resp_p99_ms', percentile_cont(0.99) WITHIN GROUP (ORDER BY seq_ms - resp_ms),
  'seq_minus_created_p50_ms', percentile_cont(0.5) WITHIN GROUP (ORDER BY seq_ms - created_ms),
  'seq_minus_created_p99_ms', percentile_cont(0.99) WITHIN GROUP (ORDER BY seq_ms - created_ms),
  'resp_minus_created_p50_ms', percentile_cont(0.5) WITHIN GROUP (ORDER BY resp_ms - created_ms),
  'sse_frames', count(sse_ms),
  'sse_minus_resp_p50_ms', percentile_cont(0.5) WITHIN GROUP (ORDER BY sse_ms - resp_ms),
  'sse_minus_resp_p99_ms', percentile_cont(0.99) WITHIN GROUP (ORDER BY sse_ms - resp_ms),
  'sse_minus_seq_p50_ms', percentile_cont(0.5) WITHIN GROUP (ORDER BY sse_ms - seq_ms),
  'sse_minus_seq_p99_ms', percentile_cont(0.99) WITHIN GROUP (ORDER BY sse_ms - seq_ms))
FROM j;
SQL
)
LAT_JSON=$(jq -c --argjson rate "$LAT_RATE" '. + {rate: $rate}' <<<"$LAT_JSON")
log "  latency: $LAT_JSON"

# ---------------------------------------------------------------- metadata + report

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no-commit")
if [ "$commit" != no-commit ] && ! git -C "$ROOT" diff-index --quiet HEAD -- 2>/dev/null; then commit="$commit-dirty"; fi
buildtype=n/a
bo=$(dirname "$ENGRAMD")/meson-info/intro-buildoptions.json
[ -f "$bo" ] && buildtype=$(jq -r '.[] | select(.name == "buildtype") | .value' "$bo")
pool_effective=$(curl -fsS -m 2 "$BASE/health/ready" | jq '.checks.postgres.connections // null' 2>/dev/null || echo null)

jq -n \
  --arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
  --argjson nproc "$NCPU" \
  --arg kernel "$(uname -sr)" \
  --arg load "$LOADAVG" \
  --arg cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)" \
  --arg wrk "$(wrk -v 2>&1 | head -n1 | awk '{print $2}')" \
  --arg pgbench "$(pgbench --version | awk '{print $3}')" \
  --arg commit "$commit" --arg ev "$("$ENGRAMD" version 2>/dev/null | head -n1 || echo '?')" --arg bt "$buildtype" \
  --arg pg "$("$PGBIN/postgres" --version | awk '{print $3}')" \
  --arg redis "$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')" \
  --arg pgset "$PG_SETTINGS" --argjson pool "${pool_effective:-null}" \
  --arg dur "$DURATION" --arg warm "$WARMUP" --argjson conns "$CONNS" --argjson runs "$RUNS" \
  --arg rdur "$READ_DURATION" --arg odur "$OPEN_DURATION" --argjson ofrac "$OPEN_FRACTION" \
  --argjson orate "$OPEN_RATE" --argjson peak "$PEAK" --arg pgbmode "prepared$([ "$PGBENCH_EXTENDED" = 1 ] && echo ' + extended')" \
  --arg lcpu "$LOAD_CPUS" --arg scpu "$SERVER_CPUS" --arg ll "$LOG_LEVEL" \
  --argjson claims "$CLAIMS" --argjson dups "$DUPS" \
  --argjson read_rows "$READ_ROWS" --argjson list_n "$LIST_N" --argjson search_n "$SEARCH_N" \
  --argjson list_bytes "$LIST_BYTES" --argjson search_bytes "$SEARCH_BYTES" --arg words "$SEARCH_WORDS" \
  --argjson seq "$SEQ_JSON" --argjson lat "$LAT_JSON" --rawfile plans "$TMP/plans.txt" \
  --argjson open_server "$OPEN_SERVER" \
  '{date: $date, nproc: $nproc, kernel: $kernel, cpu_model: $cpu, loadavg_before: $load,
    versions: {wrk: $wrk, pgbench: $pgbench, postgresql: $pg, redis: $redis},
    engramd_commit: $commit, engramd_version: $ev, engramd_buildtype: $bt,
    pg_settings: $pgset, engram_db_pool_size: $pool,
    settings: {duration: $dur, warmup: $warm, connections: $conns, runs: $runs, read_duration: $rdur,
               open_duration: $odur, open_fraction: $ofrac, pgbench_mode: $pgbmode,
               load_cpus: $lcpu, server_cpus: $scpu, engram_log_level: $ll},
    write_peak_rps: $peak, open_rate: $orate, claims_created: $claims, duplicate_responses: $dups,
    read: {rows: $read_rows, list_rows: $list_n, search_rows_river: $search_n, list_bytes: $list_bytes,
           search_bytes: $search_bytes, search_words: ($words | split(" "))},
    open_server: $open_server, sequencer: $seq, latency: $lat, plans: $plans}' >"$TMP/meta.json"

summary=$("$PY" "$HERE/summarize.py" "$TMP/meta.json" "$TMP/runs.jsonl" "$RESULTS")
printf '%s\n' "$summary"
log "results: $RESULTS/api.md, $RESULTS/api.json ($(( SECONDS - START )) s)"

if [ "${BENCH_GATE:-0}" = 1 ] && grep -q ': FAIL' <<<"$summary"; then exit 3; fi
