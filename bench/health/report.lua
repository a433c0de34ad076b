-- wrk script for bench/health/run.sh: no request()/response() hooks (keeps wrk's static fast path);
-- done() prints one machine-readable line. Latencies are in microseconds.
done = function(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_s":%.3f,"bytes":%d,"rps":%.1f,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
    summary.requests, secs, summary.bytes, summary.requests / secs,
    math.floor(latency:percentile(50)), math.floor(latency:percentile(90)),
    math.floor(latency:percentile(99)), latency.mean, math.floor(latency.max),
    e.connect, e.read, e.write, e.status, e.timeout))
end
