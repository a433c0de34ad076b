#!/usr/bin/env bash
# bench/tls/run.sh — issue #5 (TLS part): HTTPS vs HTTP requests/s on one engramd, and the memory
# an idle TLS connection costs.
#
# One self-contained run (about 3 minutes): a throwaway PostgreSQL 15 cluster in a temp dir, a
# P-256 certificate made with openssl, and one engramd serving both listeners (HTTP and HTTPS) on
# 127.0.0.1. wrk runs each scenario over both schemes, RUNS rounds alternating, wrk pinned to its own
# CPU; the 1-minute load average is recorded before every run (the machine is shared).
#   health      GET /health/live, keep-alive
#   read        GET /api/v1/memories/{id} (one PostgreSQL round trip), keep-alive
#   handshake   GET /health/live with Connection: close (a new connection, so a handshake, per request)
# Then bench/tls/idle_conns.py opens N idle keep-alive connections per scheme and reads engramd's
# RSS, bench/tls/sizes.c prints mbedTLS's own per-session buffers, and bench/tls/conn_mem.c measures
# the heap one established server session holds (mallinfo2, in-memory handshakes).
# Results: appended to bench/results/tls.md. Every process started here is stopped at exit (trap).
#
# Environment (all optional):
#   BENCH_DURATION=10s BENCH_CONNECTIONS=32 BENCH_THREADS=1 BENCH_RUNS=3 BENCH_IDLE_CONNS=1000
#   BENCH_SCENARIOS="health read handshake"
#   BENCH_WRK_CPUS=1 BENCH_SERVER_CPUS=0    taskset CPU lists (defaults need nproc >= 2; else unpinned)
#   BENCH_RESULTS_DIR=bench/results         where tls.md goes
#   ENGRAMD=build/engramd                   binary to test (default: build/, brought up to date)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PGBIN=/usr/lib/postgresql/15/bin
PY=/usr/bin/python3

DURATION=${BENCH_DURATION:-10s}
CONNS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-1}
RUNS=${BENCH_RUNS:-3}
IDLE_CONNS=${BENCH_IDLE_CONNS:-1000}
SCENARIOS=${BENCH_SCENARIOS:-health read handshake}
RESULTS=${BENCH_RESULTS_DIR:-$ROOT/bench/results}
if [ "$(nproc)" -ge 2 ]; then
  WRK_CPUS=${BENCH_WRK_CPUS-1}
  SERVER_CPUS=${BENCH_SERVER_CPUS-0}
else
  WRK_CPUS=${BENCH_WRK_CPUS-}
  SERVER_CPUS=${BENCH_SERVER_CPUS-}
fi

log() { printf 'bench/tls: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
for c in wrk openssl taskset curl jq ss cc; do command -v "$c" >/dev/null || die "$c not found"; done

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bench_init tls

# ---------------------------------------------------------------- PostgreSQL, certificate, engramd

build_engramd
start_pg -c fsync=off

(cd "$TMP" && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
   -keyout key.pem -out cert.pem -days 2 -subj /CN=localhost \
   -addext subjectAltName=DNS:localhost,IP:127.0.0.1) >"$TMP/openssl.log" 2>&1 \
  || { cat "$TMP/openssl.log" >&2; die "openssl failed"; }

# The scenarios measure the transport; keys are measured by bench/api/layers.sh.
export DATABASE_URL="postgresql://engram@127.0.0.1:$PG_PORT/engram" ENGRAM_LOG_LEVEL=warn
export ENGRAM_AUTH=${BENCH_ENGRAM_AUTH:-off}
"$ENGRAMD" migrate >"$TMP/migrate.log" 2>&1 || { cat "$TMP/migrate.log" >&2; die "migrate failed"; }
HTTP_PORT=$(free_port)
TLS_PORT=$(free_port)
pin "$SERVER_CPUS"
PORT=$HTTP_PORT ENGRAM_BIND=127.0.0.1 ENGRAM_TLS_PORT=$TLS_PORT ENGRAM_TLS_CERT=$TMP/cert.pem \
  ENGRAM_TLS_KEY=$TMP/key.pem "${PIN[@]}" "$ENGRAMD" serve >"$TMP/engramd.log" 2>&1 &
ENGRAM_PID=$!
PIDS+=("$ENGRAM_PID")
for _ in $(seq 1 150); do
  curl -fsS -m 1 -o /dev/null "http://127.0.0.1:$HTTP_PORT/health/ready" 2>/dev/null && break
  sleep 0.1
done
curl -fsS -m 2 -o /dev/null -k "https://127.0.0.1:$TLS_PORT/health/live" \
  || { tail -n 30 "$TMP/engramd.log" >&2; die "engramd did not come up on both listeners"; }

PROJECT=bench-tls
MEM_ID=$(curl -fsS -m 5 -H "x-project-id: $PROJECT" -H 'Content-Type: application/json' \
  -d '{"subject_id":"u-bench","text":"a memory read over HTTP and HTTPS"}' \
  "http://127.0.0.1:$HTTP_PORT/api/v1/memories" | jq -r .id)
[ -n "$MEM_ID" ] && [ "$MEM_ID" != null ] || die "could not create the memory to read"
CIPHER=$(openssl s_client -connect "127.0.0.1:$TLS_PORT" </dev/null 2>/dev/null \
         | awk '/Cipher is/ { print $NF; exit }')

# ---------------------------------------------------------------- wrk runs

ROWS=$TMP/rows.jsonl
: >"$ROWS"
run_wrk() { # scenario scheme run
  local scen=$1 scheme=$2 run=$3 path=/health/live close=0 port=$HTTP_PORT url load t0 t1 out
  [ "$scen" = read ] && path=/api/v1/memories/$MEM_ID
  [ "$scen" = handshake ] && close=1
  [ "$scheme" = https ] && port=$TLS_PORT
  url=$scheme://127.0.0.1:$port
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  t0=$(proc_ticks "$ENGRAM_PID")
  pin "$WRK_CPUS"
  out=$(BENCH_PROJECT=$PROJECT BENCH_PATH=$path BENCH_CLOSE=$close "${PIN[@]}" \
        wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s "$HERE/req.lua" "$url" | grep '^WRKJSON' | cut -d' ' -f2-)
  t1=$(proc_ticks "$ENGRAM_PID")
  echo "$out" | jq -c --arg s "$scen" --arg m "$scheme" --argjson r "$run" --arg l "$load" \
    --argjson ticks $(( t1 - t0 )) --argjson hz "$CLK_TCK" \
    '. + {scenario: $s, scheme: $m, run: $r, load: $l,
          cpu_us_per_req: (if .requests > 0 then ($ticks / $hz * 1e6 / .requests) else null end)}' >>"$ROWS"
  log "$scen $scheme run $run: $(echo "$out" | jq -r .rps) req/s (load $load)"
}

for scen in $SCENARIOS; do   # warm-up
  BENCH_PROJECT=$PROJECT BENCH_PATH=/health/live wrk -t1 -c4 -d1s -s "$HERE/req.lua" \
    "https://127.0.0.1:$TLS_PORT" >/dev/null
done
for r in $(seq 1 "$RUNS"); do
  for scen in $SCENARIOS; do
    run_wrk "$scen" http "$r"
    run_wrk "$scen" https "$r"
  done
done

# ---------------------------------------------------------------- full and resumed handshakes

# openssl s_time: one client, sequential connections; the server's CPU per handshake is the figure
# that matters (wrk's "handshake" scenario resumes sessions with the ticket).
s_time() { # -new | -reuse
  local t0 t1 out n
  t0=$(proc_ticks "$ENGRAM_PID")
  pin "$WRK_CPUS"
  out=$("${PIN[@]}" openssl s_time -connect "127.0.0.1:$TLS_PORT" "$1" -time 5 2>/dev/null \
        | awk '/connections in/ { print $1; exit }')
  t1=$(proc_ticks "$ENGRAM_PID")
  n=${out:-0}
  echo "{\"mode\":\"${1#-}\",\"connections\":$n,\"server_cpu_ms_per_handshake\":$(
    awk -v t=$(( t1 - t0 )) -v hz="$CLK_TCK" -v n="$n" \
      'BEGIN { if (n > 0) printf "%.3f", t / hz * 1000 / n; else print "null" }'),\"load\":\"$(cut -d' ' -f1 /proc/loadavg)\"}"
}
HS_NEW=$(s_time -new)
HS_REUSE=$(s_time -reuse)
log "s_time: $HS_NEW $HS_REUSE"

# ---------------------------------------------------------------- memory

IDLE=$($PY "$HERE/idle_conns.py" "$ENGRAM_PID" "$HTTP_PORT" "$TLS_PORT" "$IDLE_CONNS")
cc -O0 -o "$TMP/sizes" "$HERE/sizes.c" && SIZES=$("$TMP/sizes")
cc -O1 -o "$TMP/conn_mem" "$HERE/conn_mem.c" -lmbedtls -lmbedx509 -lmbedcrypto && HEAP=$("$TMP/conn_mem")
METRICS=$(curl -fsS -m 5 "http://127.0.0.1:$HTTP_PORT/metrics" | grep '^tls_' | tr '\n' ';')

# ---------------------------------------------------------------- report

mkdir -p "$RESULTS"
VERSION=$("$ENGRAMD" version)
BUILDTYPE=$(meson introspect --buildoptions "$(dirname "$ENGRAMD")" 2>/dev/null \
            | jq -r '.[] | select(.name=="buildtype") | .value' 2>/dev/null || echo unknown)
IDLE=$IDLE SIZES=$SIZES HEAP=$HEAP HS_NEW=$HS_NEW HS_REUSE=$HS_REUSE METRICS=$METRICS $PY - "$ROWS" "$RESULTS/tls.md" <<PYEOF
import json, os, statistics, sys, time
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
out = sys.argv[2]
idle = json.loads(os.environ["IDLE"])
sizes = json.loads(os.environ["SIZES"])
heap = json.loads(os.environ["HEAP"])
new = not os.path.exists(out)
with open(out, "a") as f:
    if new:
        f.write("# HTTPS vs HTTP on one engramd (issue #5, TLS)\n\nProduced by \`bench/tls/run.sh\`. "
                "Each section is one run; medians of the rounds. The machine is shared: the load "
                "average before each run is recorded beside it.\n")
    f.write("\n## %s\n\n" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    f.write("- machine: \`nproc\` %s, kernel %s; engramd \`%s\` (buildtype %s), mbedTLS 2.28 (Debian)\n"
            % ("$(nproc)", "$(uname -r)", "$VERSION", "$BUILDTYPE"))
    f.write("- load: \`wrk -t$THREADS -c$CONNS -d$DURATION\`, $RUNS rounds alternating HTTP/HTTPS; "
            "wrk on CPU ${WRK_CPUS:-any}, engramd on CPU ${SERVER_CPUS:-any}; negotiated suite \`$CIPHER\` "
            "(P-256 ECDSA certificate)\n\n")
    f.write("| scenario | scheme | runs: req/s (load avg 1 min before) | median req/s | median p50 ms | median p99 ms | median server CPU µs/req | errors |\n")
    f.write("|---|---|---|---:|---:|---:|---:|---:|\n")
    med = {}
    for scen in "$SCENARIOS".split():
        for scheme in ("http", "https"):
            rs = [r for r in rows if r["scenario"] == scen and r["scheme"] == scheme]
            if not rs:
                continue
            runs = ", ".join("%.0f (%s)" % (r["rps"], r["load"].split()[0]) for r in rs)
            m = statistics.median(r["rps"] for r in rs)
            med[(scen, scheme)] = m
            f.write("| %s | %s | %s | **%.0f** | %.3f | %.3f | %.1f | %d |\n" % (
                scen, scheme, runs, m, statistics.median(r["p50_us"] for r in rs) / 1000,
                statistics.median(r["p99_us"] for r in rs) / 1000,
                statistics.median(r["cpu_us_per_req"] for r in rs),
                sum(r["errors"] + r["status_other"] for r in rs)))
    f.write("\nHTTPS / HTTP (median req/s): %s.\n" % ", ".join(
        "%s %.2f" % (s, med[(s, "https")] / med[(s, "http")])
        for s in "$SCENARIOS".split() if (s, "http") in med and (s, "https") in med))
    f.write("\nThe *handshake* rows reconnect for every request, but wrk resumes its TLS session "
            "(ticket), so they measure abbreviated handshakes. One sequential \`openssl s_time\` "
            "client, 5 s each: full handshakes %s (server CPU **%s ms** per handshake, load %s), "
            "resumed %s (server CPU **%s ms**, load %s).\n" % (
                json.loads(os.environ["HS_NEW"])["connections"],
                json.loads(os.environ["HS_NEW"])["server_cpu_ms_per_handshake"],
                json.loads(os.environ["HS_NEW"])["load"],
                json.loads(os.environ["HS_REUSE"])["connections"],
                json.loads(os.environ["HS_REUSE"])["server_cpu_ms_per_handshake"],
                json.loads(os.environ["HS_REUSE"])["load"]))
    f.write("\nIdle keep-alive connections (%d per scheme, engramd VmRSS delta): HTTP %.1f KiB, "
            "**HTTPS %.1f KiB per connection** (difference %.1f KiB). mbedTLS's own share: "
            "ssl_context %d B + input buffer %d B + output buffer %d B + session %d B + transform %d B "
            "(MBEDTLS_SSL_MAX_CONTENT_LEN %d, compiled into Debian's library; the buffers stay "
            "allocated for the life of the connection).\n" % (
                idle["n"], idle["http_per_conn_bytes"] / 1024, idle["https_per_conn_bytes"] / 1024,
                (idle["https_per_conn_bytes"] - idle["http_per_conn_bytes"]) / 1024,
                sizes["ssl_context"], sizes["in_buf"], sizes["out_buf"], sizes["session"],
                sizes["transform"], sizes["max_content_len"]))
    f.write("\nHeap an established, idle server session holds (\`bench/tls/conn_mem.c\`, mallinfo2 over "
            "%d in-memory handshakes with engramd's settings): **%d B** allocated by mbedTLS, plus the "
            "%d B \`mbedtls_ssl_context\` inside engramd's per-connection TLS state (the RSS "
            "figure above can come out lower: record-buffer pages never written are not resident; "
            "an idle plain connection's few hundred bytes vanish in the allocator's slack).\n" % (heap["pairs"], heap["server_heap_per_session"],
                                   heap["ssl_context_struct"]))
    f.write("\nServer counters after the run: \`%s\`\n"
            % os.environ["METRICS"].strip(";").replace(";", "\`, \`"))
PYEOF
log "appended to $RESULTS/tls.md"
tail -n 20 "$RESULTS/tls.md" >&2
