-- wrk script for bench/tls/run.sh: GET BENCH_PATH with x-project-id BENCH_PROJECT; with
-- BENCH_CLOSE=1 every request says Connection: close (wrk reconnects: one handshake per request).
-- done() prints one WRKJSON line (latency in us) with the count of 200s and other statuses.
local project = os.getenv("BENCH_PROJECT") or "bench"
local path = os.getenv("BENCH_PATH") or "/health/live"
local close = os.getenv("BENCH_CLOSE") == "1"
local threads = {}
local req

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  c200, cother = 0, 0
  local h = { ["x-project-id"] = project }
  if close then h["Connection"] = "close" end
  req = wrk.format("GET", path, h)
end

function request()
  return req
end

function response(status, hdrs, body)
  if status == 200 then c200 = c200 + 1 else cother = cother + 1 end
end

function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  local s200, sother = 0, 0
  for _, t in ipairs(threads) do
    s200 = s200 + (t:get("c200") or 0)
    sother = sother + (t:get("cother") or 0)
  end
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_s":%.3f,"rps":%.1f,"p50_us":%d,"p99_us":%d,' ..
    '"errors":%d,"status_200":%d,"status_other":%d}\n',
    summary.requests, secs, summary.requests / secs,
    math.floor(latency:percentile(50)), math.floor(latency:percentile(99)),
    e.connect + e.read + e.write + e.status + e.timeout, s200, sother))
end
