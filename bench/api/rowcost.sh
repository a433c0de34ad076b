#!/usr/bin/env bash
# bench/api/rowcost.sh: what each part of a keyed create costs PostgreSQL, in µs of one backend's
# time per transaction (PostgreSQL only: no engramd, no HTTP, no sequencer).
#
# floor.sh compares the same statements by pgbench throughput, and on this machine its intervals
# are 8-17 points wide: too wide to order variants a few per cent apart. Here each variant is a
# PL/pgSQL procedure that runs the statements of bench/api/floor-sql.sh (engramd's, with its
# parameters made up in SQL) and commits, N times; one psql session calls the procedures in an
# order rotated each round and times each call. Nothing crosses the network and only one backend
# works, so a call's time is that backend's work (synchronous_commit=off by default, so a commit
# does not wait for the disk: this measures CPU, not flush latency). The cost of a variant in a
# round is its µs per transaction minus plain's in the same round; the estimate is the median over
# the rounds with a bootstrap 95 % interval. What it leaves out: the protocol's per-statement work
# (Bind, Execute), which is why it is no substitute for interleave.sh, only for explaining it.
#   plain    an unkeyed create, audit columns NULL (auth off)
#   audited  the same with its audit record on the outbox row (auth on)
#   keyed    engramd's keyed, audited create: the outbox row and the answer in one statement
#   apart    the answer's INSERT as a statement of its own, as up to a229f27
#   row      audited, then a plain INSERT of the answer into idempotency_answers (primary key and
#            BRIN index): the floor of an answer in its own table
#   rowpk    the same into a copy with the primary key only
#   rowheap  the same into a copy with no index at all (not correct: the least a row costs)
#   outbox   the claim, then an outbox row that carries the answer, unique on its scope
# Results: a section appended to bench/results/layers.md and bench/results/rowcost.json.
#
# Environment (all optional): BENCH_ROUNDS=80 BENCH_TX=300 (transactions per call)
# BENCH_VARIANTS='plain audited keyed apart row rowpk rowheap outbox' (plain is the base)
# BENCH_PG_OPTS='-c synchronous_commit=off' BENCH_RESULTS_DIR=bench/results ENGRAMD=build/engramd
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PGBIN=/usr/lib/postgresql/15/bin # used by bench/lib.sh

ROUNDS=${BENCH_ROUNDS:-80}
NTX=${BENCH_TX:-300}
PG_OPTS=${BENCH_PG_OPTS:--c synchronous_commit=off}
RESULTS=${BENCH_RESULTS_DIR:-$ROOT/bench/results}
log() { printf 'bench/rowcost: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
read -r -a VARIANTS <<<"${BENCH_VARIANTS:-plain audited keyed apart row rowpk rowheap outbox}"
case " ${VARIANTS[*]} " in *" plain "*) ;; *) die "BENCH_VARIANTS must include plain (the base)" ;; esac

for c in runuser python3; do command -v "$c" >/dev/null || die "$c not found (run ops/setup)"; done

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_init rowcost
START=$SECONDS
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
build_engramd
# shellcheck source=bench/api/floor-sql.sh
. "$HERE/floor-sql.sh"
# shellcheck disable=SC2086 # PG_OPTS is a list of -c options
floor_db $PG_OPTS

# A procedure per variant: pgbench's :r and :w become PL/pgSQL variables (r, ww: "w" is a table
# alias in the statements), a bare SELECT becomes PERFORM, and the memory insert's RETURNING goes
# (PL/pgSQL has nowhere to put it).
plpgsql() { sed -e 's/:r::text/r::text/g' -e 's/:w::text/ww::text/g' -e 's/ RETURNING id;$/;/' \
  -e 's/^SELECT /PERFORM /' <<<"$1"; }
proc() { # name statements...
  local name=$1 s; shift
  # shellcheck disable=SC2016 # $p$ is PL/pgSQL's quote
  printf 'CREATE PROCEDURE v_%s(n int) LANGUAGE plpgsql AS $p$\nDECLARE r bigint; ww int;\nBEGIN\n' "$name"
  printf 'FOR i IN 1..n LOOP\n  r := 1 + (random() * 9e18)::bigint; ww := 1 + (random() * 31)::int;\n'
  for s in "$@"; do printf '  %s\n' "$(plpgsql "$s")"; done
  # shellcheck disable=SC2016
  printf '  COMMIT;\nEND LOOP;\nEND $p$;\n'
}
{
  proc plain "$MEM" "$OUTBOX_OFF"
  proc audited "$MEM" "$OUTBOX_ALL"
  proc keyed "$MEM" "$ANSWERED"
  proc apart "$MEM" "$OUTBOX_ALL" "$STORE_APART"
  proc row "$MEM" "$OUTBOX_ALL" "$STORE_ROW"
  proc rowpk "$MEM" "$OUTBOX_ALL" "${STORE_ROW/INTO idempotency_answers /INTO answers_pk }"
  proc rowheap "$MEM" "$OUTBOX_ALL" "${STORE_ROW/INTO idempotency_answers /INTO answers_heap }"
  proc outbox "$CLAIM" "$MEM" "$OUTBOX_ANSWER"
} >"$TMP/procs.sql"
"${PSQL[@]}" -f "$TMP/procs.sql" >/dev/null || die "could not create the procedures"

# One session: a warm-up call of each, then the rounds; \echo names the call that \timing times.
{
  printf '%s\n' '\timing on'
  for v in "${VARIANTS[@]}"; do echo "CALL v_$v($NTX);"; done
  for r in $(seq 1 "$ROUNDS"); do
    for i in "${!VARIANTS[@]}"; do
      v=${VARIANTS[$(( (i + r) % ${#VARIANTS[@]} ))]}
      printf '\\echo ROUND %s %s\n' "$r" "$v"
      echo "CALL v_$v($NTX);"
    done
  done
} >"$TMP/run.sql"
log "PostgreSQL ${PG_OPTS:-defaults}; $ROUNDS rounds of $NTX transactions per variant, order rotated"
"${PSQL[@]}" -f "$TMP/run.sql" >"$TMP/run.out" 2>&1 || { tail -n 20 "$TMP/run.out" >&2; die "a call failed"; }
awk '/^ROUND / { r = $2; v = $3 } /^Time: / { if (r != "") { print r, v, $2; r = "" } }' \
  "$TMP/run.out" >"$TMP/times.txt"

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no-commit")
if [ "$commit" != no-commit ] && ! git -C "$ROOT" diff-index --quiet HEAD -- 2>/dev/null; then commit="$commit-dirty"; fi
mkdir -p "$RESULTS"
python3 "$HERE/rowcost.py" "$TMP/times.txt" "$RESULTS/rowcost.json" \
  "date=$(date -u '+%Y-%m-%d %H:%M UTC')" "commit=$commit" "load=$LOADAVG" "rounds=$ROUNDS" \
  "tx=$NTX" "pg=${PG_OPTS:-defaults}" | tee -a "$RESULTS/layers.md" >&2
log "results: $RESULTS/layers.md, $RESULTS/rowcost.json ($(( SECONDS - START )) s)"
