-- bench/wrkjson.lua: the one machine-readable line every wrk script in bench/ prints from done(),
--   WRKJSON {"requests":..,"duration_s":..,"bytes":..,"rps":..,"p50_us":..,"p90_us":..,
--            "p99_us":..,"mean_us":..,"max_us":..,"err_connect":..,"err_read":..,
--            "err_write":..,"err_status":..,"err_timeout":..,"errors":..[, "status_<name>":..]}
-- (latencies in microseconds; errors is the sum of the err_* counts), with the status counters
-- the script kept per thread. A script loads it relative to its own path:
--   local wrkjson = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "../wrkjson.lua")
-- and ends with
--   done = wrkjson.done(threads, { "201", "200", "other" })
-- where threads are the thread objects its setup() collected and each thread counts status
-- <name> in the global c<name> (c201, c200, cother).
local M = {}

function M.done(threads, statuses)
  return function(summary, latency, requests)
    local e = summary.errors
    local secs = summary.duration / 1e6
    local line = string.format(
      'WRKJSON {"requests":%d,"duration_s":%.3f,"bytes":%d,"rps":%.1f,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d,' ..
      '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,"errors":%d',
      summary.requests, secs, summary.bytes, summary.requests / secs,
      math.floor(latency:percentile(50)), math.floor(latency:percentile(90)),
      math.floor(latency:percentile(99)), latency.mean, math.floor(latency.max),
      e.connect, e.read, e.write, e.status, e.timeout,
      e.connect + e.read + e.write + e.status + e.timeout)
    for _, name in ipairs(statuses or {}) do
      local n = 0
      for _, t in ipairs(threads or {}) do n = n + (t:get("c" .. name) or 0) end
      line = line .. string.format(',"status_%s":%d', name, n)
    end
    io.write(line .. "}\n")
  end
end

return M
