#!/usr/bin/python3
"""Summarize one bench/api/run.sh run: writes <results>/api.json (latest run) and appends a dated
section to <results>/api.md. Standard library only (Debian's /usr/bin/python3).

usage: summarize.py META_JSON RUNS_JSONL RESULTS_DIR
"""
import json
import os
import statistics
import sys

TARGET_WRITE_RATIO = 0.85      # engramd creates/s >= 0.85 x pgbench's rate for the same transaction
TARGET_OPEN_P99_MS = 10.0      # p99 at half the peak rate
NOISE_PCT = 10
# Figures issue #3 gives for this machine class (16 connections).
ISSUE_CORE_RPS = 2500
ISSUE_CORE_P99_MS = 39
ISSUE_PGBENCH_RPS = 3500

LABELS = {
    "write_unique": "engramd POST, new subject per request",
    "pgbench_unique": "pgbench -M prepared, same transaction, new subject",
    "write_hot": "engramd POST, one hot subject",
    "pgbench_hot": "pgbench -M prepared, same transaction, one subject",
    "pgbench_unique_ext": "pgbench -M extended (info), new subject",
    "write_open": "engramd POST, open loop",
    "read_list": "engramd GET /memories?limit=50",
    "read_search": "engramd GET /memories/search?q=word",
    "write_sse": "engramd POST, open loop + 1 SSE client",
}
ORDER = list(LABELS)


def ms(us):
    return "n/a" if us is None else f"{us / 1000:.2f}"


def med(values):
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def num(v, fmt):
    return "n/a" if v is None else format(v, fmt)


def main():
    meta_path, runs_path, out_dir = sys.argv[1:4]
    with open(meta_path) as f:
        meta = json.load(f)
    with open(runs_path) as f:
        runs = [json.loads(line) for line in f if line.strip()]

    scenarios = [s for s in ORDER if any(r["scenario"] == s for r in runs)]
    cols = ["rps", "p50_us", "p90_us", "p99_us", "engramd_cpu_pct", "engramd_cpu_us_per_req", "pg_cpu_pct",
            "pg_cpu_us_per_req", "load_cpu_pct", "other_cpu_pct", "svc_p50_us", "svc_p99_us"]
    medians = {}
    for s in scenarios:
        rs = [r for r in runs if r["scenario"] == s]
        m = {c: med(r.get(c) for r in rs) for c in cols}
        m["runs"] = len(rs)
        m["errors"] = sum(r.get("errors", 0) for r in rs)
        m["requests"] = sum(r.get("requests", 0) for r in rs)
        medians[s] = m

    def ratio(a, b):
        if a in medians and b in medians and medians[b]["rps"]:
            return medians[a]["rps"] / medians[b]["rps"]
        return None

    r_unique = ratio("write_unique", "pgbench_unique")
    r_hot = ratio("write_hot", "pgbench_hot")
    r_ext = ratio("write_unique", "pgbench_unique_ext")
    open_p99 = medians.get("write_open", {}).get("p99_us")
    verdicts = {
        "write_unique_vs_pgbench": None if r_unique is None else ("PASS" if r_unique >= TARGET_WRITE_RATIO else "FAIL"),
        "write_hot_vs_pgbench": None if r_hot is None else ("PASS" if r_hot >= TARGET_WRITE_RATIO else "FAIL"),
        "open_loop_p99": None if open_p99 is None else ("PASS" if open_p99 / 1000 < TARGET_OPEN_P99_MS else "FAIL"),
        "reads_vs_core": None,
    }
    noisy = [s for s in scenarios if (medians[s]["other_cpu_pct"] or 0) > NOISE_PCT]
    seq = meta.get("sequencer", {})
    lat = meta.get("latency", {})
    doc = {
        "benchmark": "api",
        "meta": meta,
        "runs": runs,
        "medians": medians,
        "ratios": {"write_unique_engramd_over_pgbench": r_unique, "write_hot_engramd_over_pgbench": r_hot,
                   "write_unique_engramd_over_pgbench_extended": r_ext},
        "targets": {"write_ratio": TARGET_WRITE_RATIO, "open_loop_p99_ms": TARGET_OPEN_P99_MS,
                    "reads_vs_core": "5x CORE (CORE not measured here)"},
        "issue_figures": {"core_rps": ISSUE_CORE_RPS, "core_p99_ms": ISSUE_CORE_P99_MS,
                          "pgbench_rps": ISSUE_PGBENCH_RPS},
        "verdicts": verdicts,
        "noisy": noisy,
    }
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "api.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")

    m = meta
    st = m["settings"]
    v = m["versions"]
    lines = []
    md_path = os.path.join(out_dir, "api.md")
    if not os.path.exists(md_path) or os.path.getsize(md_path) == 0:
        lines += [
            "# Memory API under load: engramd vs the database's own limit (issue #3)",
            "",
            "Produced by `bench/api/run.sh` (see `bench/README.md`). Each section is one run; the latest run",
            f"is also in `api.json`. Targets: engramd creates/s >= {TARGET_WRITE_RATIO} x pgbench running the same",
            f"transaction; p99 < {TARGET_OPEN_P99_MS:.0f} ms at half the peak rate; reads >= 5x CORE.",
            "",
        ]
    lines += [
        f"## {m['date']}",
        "",
        f"- machine: `nproc` {m['nproc']}, {m['cpu_model']}, kernel {m['kernel']}, "
        f"load average before the run {m.get('loadavg_before', 'n/a')}",
        f"- versions: engramd `{m['engramd_commit']}` ({m['engramd_version']}, buildtype {m['engramd_buildtype']}), "
        f"PostgreSQL {v['postgresql']} ({m['pg_settings']}, otherwise defaults), Redis {v['redis']}, "
        f"wrk {v['wrk']}, pgbench {v['pgbench']}",
        f"- engramd: DB pool {m['engram_db_pool_size']} connections, `ENGRAM_LOG_LEVEL={st['engram_log_level']}`, "
        f"CPU {st['server_cpus'] or 'any'}; load tools (wrk -t1, pgbench -j1, bench/api/paced) on CPU {st['load_cpus'] or 'any'}; "
        "PostgreSQL unpinned",
        f"- writes: {st['connections']} connections, {st['runs']} rounds of {st['duration']} alternating "
        "engramd-unique, pgbench-unique, engramd-hot, pgbench-hot (, pgbench -M extended), after a "
        f"{st['warmup']} warm-up; pgbench `-c{st['connections']} -j1`, modes {st['pgbench_mode']}, "
        "the two statements in one `\\startpipeline`/`\\endpipeline`. The reference is `-M prepared`: "
        "named prepared statements in a pipeline, which is what engramd sends; `-M extended` parses and plans "
        "both statements in every transaction and is shown for information. Texts are unique and produce no "
        f"claims (claims created in the run: {m['claims_created']}; duplicate answers: {m['duplicate_responses']}), "
        "so each write is the memory INSERT + the outbox INSERT only",
        f"- open loop: {m['open_rate']} writes/s = {st['open_fraction']} x the median unique-subject peak "
        f"({m['write_peak_rps']:.0f}/s), {st['runs']} x {st['open_duration']}, at most {st['connections']} in flight; "
        "latency from the scheduled send time (so queueing behind a slow response counts)",
        f"- reads: subject with {m['read']['rows']} memories; list returns {m['read']['list_rows']} rows "
        f"({m['read']['list_bytes']} bytes); search cycles q over {len(m['read']['search_words'])} words "
        f"(q=river: {m['read']['search_rows_river']} rows, {m['read']['search_bytes']} bytes); "
        f"{st['runs']} x {st['read_duration']}",
        "",
        "| scenario | run | req/s | p50 ms | p90 ms | p99 ms | errors | engramd CPU % | engramd µs/req "
        "| PG CPU % | PG µs/req | load CPU % | other load % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in scenarios:
        rs = sorted((r for r in runs if r["scenario"] == s), key=lambda r: str(r["round"]))
        for r in rs:
            lines.append(f"| {LABELS[s]} | {r['round']} | {r['rps']:.0f} | {ms(r.get('p50_us'))} | "
                         f"{ms(r.get('p90_us'))} | {ms(r.get('p99_us'))} | {r.get('errors', 0)} | "
                         f"{num(r.get('engramd_cpu_pct'), '.0f')} | {num(r.get('engramd_cpu_us_per_req'), '.0f')} | "
                         f"{num(r.get('pg_cpu_pct'), '.0f')} | {num(r.get('pg_cpu_us_per_req'), '.0f')} | "
                         f"{num(r.get('load_cpu_pct'), '.0f')} | {num(r.get('other_cpu_pct'), '.0f')} |")
        if len(rs) > 1:
            md = medians[s]
            lines.append(f"| **{LABELS[s]}** | **median** | **{md['rps']:.0f}** | **{ms(md['p50_us'])}** | "
                         f"{ms(md['p90_us'])} | **{ms(md['p99_us'])}** | {md['errors']} | "
                         f"{num(md['engramd_cpu_pct'], '.0f')} | {num(md['engramd_cpu_us_per_req'], '.0f')} | "
                         f"{num(md['pg_cpu_pct'], '.0f')} | {num(md['pg_cpu_us_per_req'], '.0f')} | "
                         f"{num(md['load_cpu_pct'], '.0f')} | {num(md['other_cpu_pct'], '.0f')} |")
    lines += [
        "",
        "CPU columns are % of one CPU over the run (from /proc; PostgreSQL = postmaster, backends and the backends "
        "that ended). µs/req is CPU time per completed request. *other load* is the rest of the machine: "
        f"above about {NOISE_PCT} % the run is noisy. "
        "Write/read latency is wrk's closed loop at 16 connections (queueing included).",
    ]
    if "write_open" in medians:
        md = medians["write_open"]
        lines += ["", f"Open loop, measured from the actual send instead of the schedule (service time): "
                      f"p50 {ms(md['svc_p50_us'])} ms, p99 {ms(md['svc_p99_us'])} ms."]
        osrv = m.get("open_server") or {}
        pm, db = osrv.get("post_memories") or {}, osrv.get("db_batches") or {}
        if pm.get("count"):
            lines += ["", "The same open-loop window as engramd measured it (its histograms, so without the "
                          "load tool's own lag): "
                          f"{100 * pm['within_ms']['10']:.2f} % of {pm['count']} POSTs answered within 10 ms "
                          f"(p99 in the bucket up to {pm['p99_le_ms']} ms); its database batches (the round trip "
                          f"to PostgreSQL, commit included) {100 * db['within_ms']['10']:.2f} % within 10 ms "
                          f"(p99 up to {db['p99_le_ms']} ms)."]
    if noisy:
        lines += ["", f"**Warning: noisy run.** Other processes used more than {NOISE_PCT} % of a CPU during: "
                      f"{', '.join(noisy)}. Compare CPU µs/req rather than req/s for those."]

    # Sequencer and latency.
    lines += ["", "**Sequencer.**", ""]
    if seq:
        lines.append(
            f"- drain: {seq['rows']} outbox rows committed in one transaction → {seq['sequenced']} events in "
            f"{seq['drain_s'] * 1000:.0f} ms (**{seq['events_per_s']:.0f} events/s**, {seq['batches']} batches, first "
            f"batch {seq['first_batch_after_commit_ms']:.0f} ms after the commit, polled every 50 ms); engramd CPU "
            f"{seq['engramd_cpu_pct']:.0f} %, PostgreSQL CPU {seq['pg_cpu_pct']:.0f} %")
    wb = [r.get("outbox_backlog_after") for r in runs if r.get("outbox_backlog_after") is not None]
    if wb:
        lines.append(f"- under the closed-loop write runs: outbox rows left when wrk stopped: "
                     f"{', '.join(str(b) for b in wb)} (the sequencer keeps up when these are small)")
    if lat:
        lines += [
            f"- latency at {lat['rate']} writes/s ({lat['writes']} writes, {lat['joined']} found in `events`): "
            f"sequenced_at − client's 201 arrival p50 **{num(lat['seq_minus_resp_p50_ms'], '.2f')} ms**, "
            f"p99 **{num(lat['seq_minus_resp_p99_ms'], '.2f')} ms**; sequenced_at − outbox created_at (the "
            f"writer's transaction start) p50 {num(lat['seq_minus_created_p50_ms'], '.2f')} ms, "
            f"p99 {num(lat['seq_minus_created_p99_ms'], '.2f')} ms (201 arrival − created_at p50 "
            f"{num(lat['resp_minus_created_p50_ms'], '.2f')} ms)",
            f"- SSE end to end (one project-wide subscriber, {lat['sse_frames']} memory.created frames matched): "
            f"frame arrival − 201 arrival p50 **{num(lat['sse_minus_resp_p50_ms'], '.2f')} ms**, "
            f"p99 **{num(lat['sse_minus_resp_p99_ms'], '.2f')} ms**; frame − sequenced_at p50 "
            f"{num(lat['sse_minus_seq_p50_ms'], '.2f')} ms, p99 {num(lat['sse_minus_seq_p99_ms'], '.2f')} ms",
            "- sequenced_at is the sequencer transaction's now() (its start), so it can precede the 201 "
            "arrival by the commit-to-client time; client times are the load tool's CLOCK_REALTIME, the same host "
            "clock PostgreSQL reads.",
        ]

    # Verdicts.
    lines += ["", "**Against the targets.**", ""]
    if r_unique is not None:
        mu, pu = medians["write_unique"], medians["pgbench_unique"]
        lines.append(f"- writes, new subject: engramd {mu['rps']:.0f}/s / pgbench {pu['rps']:.0f}/s = "
                     f"**{r_unique:.3f}** (target >= {TARGET_WRITE_RATIO}): **{verdicts['write_unique_vs_pgbench']}**")
    if r_hot is not None:
        mh, ph = medians["write_hot"], medians["pgbench_hot"]
        lines.append(f"- writes, hot subject: engramd {mh['rps']:.0f}/s / pgbench {ph['rps']:.0f}/s = "
                     f"**{r_hot:.3f}**: **{verdicts['write_hot_vs_pgbench']}**")
    if r_ext is not None:
        lines.append(f"- for information, against pgbench -M extended ({medians['pgbench_unique_ext']['rps']:.0f}/s): "
                     f"{r_ext:.3f}")
    if "write_unique" in medians:
        mu = medians["write_unique"]
        lines.append(f"- issue's figures for this machine class: CORE ≈ {ISSUE_CORE_RPS}/s (p99 {ISSUE_CORE_P99_MS} ms), "
                     f"pgbench ≈ {ISSUE_PGBENCH_RPS}/s. This run: engramd {mu['rps']:.0f}/s "
                     f"({mu['rps'] / ISSUE_CORE_RPS:.2f}x CORE's figure, p99 {ms(mu['p99_us'])} ms)"
                     + (f", pgbench {medians['pgbench_unique']['rps']:.0f}/s" if "pgbench_unique" in medians else ""))
    if open_p99 is not None:
        lines.append(f"- p99 at half the peak ({m['open_rate']}/s): **{ms(open_p99)} ms** (target < "
                     f"{TARGET_OPEN_P99_MS:.0f} ms): **{verdicts['open_loop_p99']}**")
    lines.append("- reads >= 5x CORE: CORE was not measured in this run (see bench/README.md); engramd's "
                 "figures are above for comparison with a later CORE measurement")
    if m.get("plans"):
        lines += ["", "<details><summary>Plans captured at the end of the read phase</summary>", "", "```",
                  m["plans"].rstrip(), "```", "", "</details>"]
    lines.append("")
    with open(md_path, "a") as f:
        f.write("\n".join(lines) + "\n")

    for s in scenarios:
        md = medians[s]
        print(f"{LABELS[s]:<42} {md['rps']:>8.0f} req/s  p50 {ms(md['p50_us'])} ms  p99 {ms(md['p99_us'])} ms  "
              f"errors {md['errors']}  engramd CPU {num(md['engramd_cpu_pct'], '.0f')}% "
              f"({num(md['engramd_cpu_us_per_req'], '.0f')} us/req)  PG CPU {num(md['pg_cpu_pct'], '.0f')}% "
              f"({num(md['pg_cpu_us_per_req'], '.0f')} us/req)  other {num(md['other_cpu_pct'], '.0f')}%")
    if r_unique is not None:
        print(f"write ratio engramd/pgbench, new subject = {r_unique:.3f} (target >= {TARGET_WRITE_RATIO}): "
              f"{verdicts['write_unique_vs_pgbench']}")
    if r_hot is not None:
        print(f"write ratio engramd/pgbench, hot subject = {r_hot:.3f}: {verdicts['write_hot_vs_pgbench']}")
    if open_p99 is not None:
        print(f"open-loop p99 at {m['open_rate']}/s = {ms(open_p99)} ms (target < {TARGET_OPEN_P99_MS:.0f}): "
              f"{verdicts['open_loop_p99']}")
    if seq:
        print(f"sequencer: {seq['events_per_s']:.0f} events/s")
    if lat:
        print(f"sequenced - response p50/p99 {num(lat['seq_minus_resp_p50_ms'], '.2f')}/"
              f"{num(lat['seq_minus_resp_p99_ms'], '.2f')} ms; SSE - response p50/p99 "
              f"{num(lat['sse_minus_resp_p50_ms'], '.2f')}/{num(lat['sse_minus_resp_p99_ms'], '.2f')} ms")
    if noisy:
        print("noisy: " + ", ".join(noisy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
