#!/usr/bin/env python3
"""bench/api/pairs.py: the summary of bench/api/interleave.sh.

Usage: pairs.py RUNS.jsonl OUT.json key=value...

RUNS.jsonl holds one wrk record per slice (scenario SCENARIO_off or SCENARIO_SETTING, round =
pair number, "warmup" skipped; the key=value arguments scenario and setting name them, write and
all by default). Writes OUT.json and prints a markdown section whose last line is the verdict
(for write and all, issue #5's target) or the estimate. The cost of a pair is
100 * (1 - SETTING/off); the estimate is the median over the pairs, with a
bootstrap 95 % interval (fixed seed, so a rerun of the summary prints the same interval), and the
pooled cost (all requests over off requests: the slices are the same length).
"""
import json
import random
import statistics
import sys

TARGET = 10.0
RESAMPLES = 10000


def median(xs):
    return statistics.median(xs) if xs else None


def bootstrap_median(xs):
    """The bootstrap 95 % interval of the median of xs (fixed seed: a rerun prints the same)."""
    rng = random.Random(5)
    boot = sorted(median([rng.choice(xs) for _ in xs]) for _ in range(RESAMPLES))
    return boot[int(0.025 * RESAMPLES)], boot[int(0.975 * RESAMPLES) - 1]


def write_json(path, obj):
    """obj as indented JSON in path (the latest run's summary)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def main():
    runs_path, out_path = sys.argv[1], sys.argv[2]
    meta = dict(a.split("=", 1) for a in sys.argv[3:])
    sc, name = meta.get("scenario", "write"), meta.get("setting", "all")
    off_k, on_k = sc + "_off", sc + "_" + name
    slices = {}
    for line in open(runs_path, encoding="utf-8"):
        r = json.loads(line)
        if r.get("round") == "warmup":
            continue
        slices.setdefault(r["round"], {})[r["scenario"]] = r
    pairs = [p for _, p in sorted(slices.items(), key=lambda kv: int(kv[0]))
             if off_k in p and on_k in p]
    if not pairs:
        sys.exit("pairs.py: no complete pair in " + runs_path)
    costs = [100.0 * (1.0 - p[on_k]["rps"] / p[off_k]["rps"]) for p in pairs]
    lo, hi = bootstrap_median(costs)
    off_req = sum(p[off_k]["requests"] for p in pairs)
    all_req = sum(p[on_k]["requests"] for p in pairs)
    pooled = 100.0 * (1.0 - all_req / off_req)
    # wrk's own errors, and the statuses other than the expected one (or 499, a request in flight
    # when its slice ended) that engramd counted (interleave.sh: wrk does not count statuses).
    errors = sum(p[s]["errors"] for p in pairs for s in (off_k, on_k)) \
        + int(meta.get("status_other", 0))

    def col(s, k):
        return median([p[s][k] for p in pairs if p[s].get(k) is not None])

    setting = {s: {"rps_median": col(sc + "_" + s, "rps"),
                   "p50_ms": col(sc + "_" + s, "p50_us") / 1000,
                   "p99_ms": col(sc + "_" + s, "p99_us") / 1000,
                   "engramd_cpu_us_per_req": col(sc + "_" + s, "engramd_cpu_us_per_req"),
                   "pg_cpu_us_per_req": col(sc + "_" + s, "pg_cpu_us_per_req"),
                   "load_cpu_us_per_req": col(sc + "_" + s, "load_cpu_us_per_req")}
               for s in ("off", name)}
    est = median(costs)
    gated = (sc, name) == ("write", "all")
    verdict = ("PASS" if est <= TARGET and pooled <= TARGET else "FAIL") if gated else None
    out = {"date": meta.get("date"), "engramd_commit": meta.get("commit"),
           "loadavg_before": meta.get("load"),
           "scenario": sc, "setting_compared": name,
           "settings": {"pairs": len(pairs), "slice": meta.get("slice"),
                        "connections": meta.get("conns"), "load_cpus": meta.get("load_cpus"),
                        "server_cpus": meta.get("server_cpus")},
           "cost_pct_median": est, "cost_pct_ci95": [lo, hi], "cost_pct_pooled": pooled,
           "cost_pct_mean": statistics.fmean(costs),
           "cost_pct_stdev": statistics.stdev(costs) if len(costs) > 1 else 0.0,
           "pair_costs_pct": [round(c, 1) for c in costs], "errors": errors,
           "idempotency_rows": int(meta.get("idem_rows", 0)),
           "duplicate_memories": int(meta.get("dup_mems", 0)),
           "outbox_backlog_after": int(meta.get("backlog", 0)),
           "statuses": meta.get("statuses"),
           "setting": setting, "target_pct": TARGET if gated else None, "verdict": verdict}
    write_json(out_path, out)

    print(f"\n## {out['date']} interleaved (bench/api/interleave.sh, commit {out['engramd_commit']},"
          f" load before {out['loadavg_before']})\n")
    grows = " (growing through the run)" if sc == "write" else ""
    print(f"wrk -c{meta.get('conns')}; {len(pairs)} pairs of {meta.get('slice')} {sc} slices in"
          f" ABBA order, off and {name} each in its own engramd on one database{grows}, the"
          " sequencer in a third engramd without load; engramd on CPU"
          f" {meta.get('server_cpus')}, load on CPU {meta.get('load_cpus')}, PostgreSQL and Redis"
          " on CPU any.\n")
    print("| setting | req/s (median slice) | p50 ms | p99 ms | engramd µs CPU/req |"
          " PostgreSQL µs CPU/req | load µs CPU/req |")
    print("|---|---|---|---|---|---|---|")
    for s in ("off", name):
        v = setting[s]
        load = "" if v["load_cpu_us_per_req"] is None else f"{v['load_cpu_us_per_req']:.0f}"
        print(f"| {s} | {v['rps_median']:.0f} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} |"
              f" {v['engramd_cpu_us_per_req']:.0f} | {v['pg_cpu_us_per_req']:.0f} | {load} |")
    print(f"\nCost per pair: median **{est:.1f} %** (bootstrap 95 % interval {lo:.1f}-{hi:.1f} %),"
          f" pooled {pooled:.1f} %, mean {out['cost_pct_mean']:.1f} % (sd"
          f" {out['cost_pct_stdev']:.1f} points). Errors: {errors}. Idempotency records stored:"
          f" {out['idempotency_rows']}; duplicate memories: {out['duplicate_memories']}; outbox"
          f" backlog at the end: {out['outbox_backlog_after']}.")
    if meta.get("statuses"):
        print(f"Answered, engramd's count over the run: {meta['statuses']}.")
    print("Pair costs (%): " + ", ".join(f"{c:.1f}" for c in costs) + ".")
    if gated:
        print(f"\nTarget: all layers together cost <= {TARGET:.0f}% of write throughput:"
              f" {est:.1f}% (median of the pairs), {pooled:.1f}% (pooled): {verdict}.")
    else:
        print(f"\nCost of {name} on {sc}s: {est:.1f}% (median of the pairs), {pooled:.1f}%"
              " (pooled); no target of its own.")


if __name__ == "__main__":
    main()
