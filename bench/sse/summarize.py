#!/usr/bin/env python3
"""bench/sse/summarize.py META_JSON RUNS_JSONL RESULTS_DIR

Turns the SSEJSON lines of bench/sse/run.sh into a dated section appended to RESULTS_DIR/sse.md
(tables, verdicts against the issue #4 targets, raw numbers) and writes RESULTS_DIR/sse.json
(the latest run). Prints the section."""
import json
import statistics
import sys
from pathlib import Path

ORDER = ["engram", "baseline_single", "baseline_coalesce", "nchan", "cluster", "cluster_direct"]


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ms(us):
    return "–" if us is None else "%.1f" % (us / 1000.0)


def num(x, fmt="%.0f"):
    return "–" if x is None else fmt % x


def verdict(ok):
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def main():
    meta = json.loads(Path(sys.argv[1]).read_text())
    runs = [json.loads(l) for l in Path(sys.argv[2]).read_text().splitlines() if l.strip()]
    out_dir = Path(sys.argv[3])
    labels = [l for l in ORDER if any(r["label"] == l for r in runs)]
    labels += sorted({r["label"] for r in runs} - set(labels))

    connect = {r["label"]: r for r in runs if r["phase"] == "connect"}
    steady = {l: [r for r in runs if r["label"] == l and r["phase"] != "connect" and not r["ramp"]]
              for l in labels}
    ramp = {l: [r for r in runs if r["label"] == l and r["phase"] != "connect" and r["ramp"]]
            for l in labels}

    summary = {}
    for l in labels:
        st = steady[l]
        ok_phases = [r for r in st + ramp[l] if r["ok"]]
        best = max(ok_phases, key=lambda r: r["deliveries_per_s"], default=None)
        # Every event delivered within the drain time, whatever the latency.
        complete = [r for r in st + ramp[l] if r["delivered"] == r["expected"] and r["lost"] == 0
                    and r["acked"] == r["planned"]]
        best_complete = max(complete, key=lambda r: r["deliveries_per_s"], default=None)
        summary[l] = {
            "subs": connect.get(l, {}).get("ready"),
            "rss_per_conn_bytes": connect.get(l, {}).get("rss_per_conn_bytes"),
            "p50_us": median([r["p50_us"] for r in st]),
            "p99_us": median([r["p99_us"] for r in st]),
            "max_us": median([r["max_us"] for r in st]),
            "cpu_us_per_delivery": median([r["server_cpu_us_per_delivery"] for r in st]),
            "other_cpu_pct": median([r.get("other_cpu_pct") for r in st]),
            "all_delivered_1ps": all(r["delivered"] == r["expected"] and r["lost"] == 0
                                     and r["acked"] == r["planned"] for r in st) if st else None,
            "sustained_deliveries_per_s": best["deliveries_per_s"] if best else None,
            "sustained_rate": best["rate"] if best else None,
            "ramp_stopped_at": next((r["rate"] for r in ramp[l] if not r["ok"]), None),
            "complete_deliveries_per_s": best_complete["deliveries_per_s"] if best_complete else None,
        }

    def get(l, k):
        return summary.get(l, {}).get(k)

    base_p99 = [get(l, "p99_us") for l in ("baseline_single", "baseline_coalesce") if get(l, "p99_us")]
    base_p99 = min(base_p99) if base_p99 else None
    base_sus = [get(l, "sustained_deliveries_per_s") for l in ("baseline_single", "baseline_coalesce")
                if get(l, "sustained_deliveries_per_s")]
    base_sus = max(base_sus) if base_sus else None
    eg = summary.get("engram", {})
    targets = []
    if eg:
        ok = None
        if eg.get("subs") is not None and eg.get("rss_per_conn_bytes") is not None:
            ok = eg["subs"] >= 19000 and eg["rss_per_conn_bytes"] <= 2048
        targets.append(("≥ 19,000 subscribers at ≤ 2 KiB each", "%s subscribers, %s B each" % (
            num(eg.get("subs")), num(eg.get("rss_per_conn_bytes"))), verdict(ok)))
        ok = None
        if eg.get("p99_us") and base_p99:
            ok = eg["p99_us"] <= 1.25 * base_p99
        targets.append(("1 event/s p99 ≤ 1.25 × baseline p99", "%s ms vs %s ms (ratio %s)" % (
            ms(eg.get("p99_us")), ms(base_p99),
            num(eg["p99_us"] / base_p99, "%.2f") if eg.get("p99_us") and base_p99 else "–"), verdict(ok)))
        ok = None
        sus = eg.get("sustained_deliveries_per_s")
        if sus and base_sus:
            ok = sus >= 0.8 * base_sus
        targets.append(("sustained deliveries/s ≥ 0.8 × baseline's best mode", "%s vs %s (ratio %s)" % (
            num(sus), num(base_sus), num(sus / base_sus, "%.2f") if sus and base_sus else "–"), verdict(ok)))
        nch = get("nchan", "sustained_deliveries_per_s")
        ok = None
        if sus and nch:
            ok = sus >= 1.8 * nch
        targets.append(("sustained deliveries/s ≥ 1.8 × nchan", "%s vs %s (ratio %s)" % (
            num(sus), num(nch), num(sus / nch, "%.2f") if sus and nch else "–"), verdict(ok)))
        cl = get("cluster", "p99_us")
        ok = None
        if cl and eg.get("p99_us"):
            ok = cl <= 1.5 * eg["p99_us"]
        targets.append(("3 instances: p99 ≤ 1.5 × single instance", "%s ms vs %s ms (ratio %s)" % (
            ms(cl), ms(eg.get("p99_us")), num(cl / eg["p99_us"], "%.2f") if cl and eg.get("p99_us") else "–"),
            verdict(ok)))
        cd = get("cluster_direct", "p99_us")
        if cd and eg.get("p99_us"):
            targets.append(("(information) the same 3 instances without HAProxy: p99 vs single",
                            "%s ms vs %s ms (ratio %s)" % (ms(cd), ms(eg["p99_us"]),
                                                          num(cd / eg["p99_us"], "%.2f")), "–"))

    s = meta["settings"]
    lines = []
    w = lines.append
    w("## %s" % meta["date"])
    w("")
    w("- machine: %s CPUs, %s, %s; load average before %s, after %s" % (
        meta["nproc"], meta["cpu_model"], meta["kernel"], meta["loadavg_before"], meta["loadavg_after"]))
    w("- engramd %s (%s); nginx %s with nchan %s; HAProxy %s; Redis %s; libuv %s" % (
        meta["engramd_commit"], meta["engramd_buildtype"], meta["versions"]["nginx"],
        meta["versions"]["nchan"], meta["versions"]["haproxy"], meta["versions"]["redis"],
        meta["versions"]["libuv"]))
    w("- settings: %s subscribers (cluster %s) connected at %s/s; %s × 1 event/s for %s s; ramp [%s] "
      "events/s × %s s, stopped at the first step not fully delivered within %s s or with p99 > %s ms; "
      "servers on CPU `%s` (nchan and cluster `%s`), load tool on CPU `%s`; cluster catch-up %s ms" % (
          s["subs"], s["cluster_subs"], s["connect_rate"], s["runs"], s["idle_secs"], s["ramp"],
          s["ramp_secs"], s["drain_s"], s["max_p99_ms"], s["server_cpus"] or "any",
          s["nchan_cpus"] or "any", s["load_cpus"] or "any", s["cluster_catchup_ms"]))
    if meta.get("cluster_fds_per_instance"):
        w("- cluster: open fds per engramd at the end: %s" % meta["cluster_fds_per_instance"])
    w("")
    if targets:
        w("### Targets (issue #4)")
        w("")
        others = [r.get("other_cpu_pct") for r in runs if r["phase"] != "connect" and r.get("other_cpu_pct") is not None]
        if others and statistics.median(others) > 20:
            w("**Noisy run:** other processes used a median %.0f %% of a CPU during the phases, so the "
              "servers were starved; the latency and throughput verdicts below are not meaningful "
              "(the memory verdict is)." % statistics.median(others))
            w("")
        w("| target | measured | verdict |")
        w("|---|---|---|")
        for t in targets:
            w("| %s | %s | %s |" % t)
        w("")
    w("### Summary")
    w("")
    w("1 event/s columns are medians over the runs. *Server CPU µs/delivery* does not depend on how "
      "starved the server was; *other CPU %* (machine busy time minus server and load tool, in % of one "
      "CPU) says how much it was: above ~10 the latency figures of that row are inflated. *Est. "
      "deliveries/s per server CPU* is 10^6 / µs per delivery at 1 event/s: a starvation-proof "
      "estimate of the ceiling if the server had one whole CPU (nchan runs 2 workers, the cluster 3 "
      "instances; compare per CPU), not a measured rate.")
    w("")
    w("| server | subscribers | RSS per idle conn (B) | 1 ev/s p50 (ms) | p99 (ms) | max (ms) | all delivered | server CPU µs/delivery | est. deliveries/s per server CPU | other CPU % | sustained deliveries/s | at events/s | ramp failed at | best deliveries/s, all delivered, any latency |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for l in labels:
        x = summary[l]
        w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            l, num(x["subs"]), num(x["rss_per_conn_bytes"]), ms(x["p50_us"]), ms(x["p99_us"]),
            ms(x["max_us"]), {None: "–", True: "yes", False: "NO"}[x["all_delivered_1ps"]],
            num(x["cpu_us_per_delivery"], "%.1f"),
            num(1e6 / x["cpu_us_per_delivery"] if x["cpu_us_per_delivery"] else None),
            num(x["other_cpu_pct"]),
            num(x["sustained_deliveries_per_s"]), num(x["sustained_rate"], "%g"),
            num(x["ramp_stopped_at"], "%g"), num(x["complete_deliveries_per_s"])))
    w("")
    w("### Connect and idle memory")
    w("")
    w("| server | target | ready | failed | closed | connect s | RSS before (kB) | RSS after (kB) | B/conn |")
    w("|---|---|---|---|---|---|---|---|---|")
    for l in labels:
        c = connect.get(l)
        if c:
            w("| %s | %d | %d | %d | %d | %.1f | %d | %d | %.0f |" % (
                l, c["subs_target"], c["ready"], c["failed"], c["closed"], c["connect_s"],
                c["rss_before_kb"], c["rss_after_kb"], c["rss_per_conn_bytes"]))
    w("")
    w("### Every phase")
    w("")
    w("| server | phase | events/s | subs | acked/planned | delivered/expected | lost/dup/ooo | deliveries/s | p50 | p90 | p99 | max (ms) | POST p50/p99 (ms) | server CPU % | µs/delivery | load CPU % | other CPU % | loadavg | ok |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for l in labels:
        for r in steady[l] + ramp[l]:
            w("| %s | %s%s | %g | %d | %d/%d | %d/%d | %d/%d/%d | %.0f | %s | %s | %s | %s | %s/%s | %.0f | %.2f | %.0f | %.0f | %s | %s |" % (
                l, r["phase"], " (ramp)" if r["ramp"] else "", r["rate"], r["subs"], r["acked"],
                r["planned"], r["delivered"], r["expected"], r["lost"], r["dup"], r["ooo"],
                r["deliveries_per_s"], ms(r["p50_us"]), ms(r["p90_us"]), ms(r["p99_us"]),
                ms(r["max_us"]), ms(r["post_p50_us"]), ms(r["post_p99_us"]), r["server_cpu_pct"],
                r["server_cpu_us_per_delivery"], r["load_cpu_pct"], r.get("other_cpu_pct", 0), r["loadavg"],
                "yes" if r["ok"] else "no"))
    w("")
    w("<details><summary>raw SSEJSON lines</summary>")
    w("")
    w("```")
    for r in runs:
        w(json.dumps(r, separators=(",", ":")))
    w("```")
    w("</details>")
    w("")
    section = "\n".join(lines)

    md = out_dir / "sse.md"
    if not md.exists():
        md.write_text("# SSE fan-out benchmark (bench/sse/run.sh, issue #4)\n\n"
                      "One dated section per run, newest last. See bench/README.md for what is measured.\n\n")
    with md.open("a") as f:
        f.write(section + "\n")
    (out_dir / "sse.json").write_text(json.dumps(
        {"meta": meta, "summary": summary, "targets": targets, "runs": runs}, indent=1) + "\n")
    print(section)


if __name__ == "__main__":
    main()
