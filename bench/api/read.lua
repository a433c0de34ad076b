-- wrk script for bench/api/run.sh: GET requests cycling through BENCH_PATHS ('|'-separated request
-- targets), with x-project-id BENCH_PROJECT. done() prints one WRKJSON line (latency in us) with
-- the count of 200s and other statuses. BENCH_API_KEY adds `Authorization: Bearer <key>`.
local project = os.getenv("BENCH_PROJECT") or "bench"
local paths = {}
for p in string.gmatch(os.getenv("BENCH_PATHS") or "/health/live", "[^|]+") do
  table.insert(paths, p)
end
local threads = {}
local reqs = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  i = 0
  c200, cother = 0, 0
  for k, p in ipairs(paths) do
    local h = { ["x-project-id"] = project }
    local apikey = os.getenv("BENCH_API_KEY")
    if apikey and apikey ~= "" then h["Authorization"] = "Bearer " .. apikey end
    reqs[k] = wrk.format("GET", p, h)
  end
end

function request()
  i = i % #reqs + 1
  return reqs[i]
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
    'WRKJSON {"requests":%d,"duration_s":%.3f,"bytes":%d,"rps":%.1f,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"status_200":%d,"status_other":%d}\n',
    summary.requests, secs, summary.bytes, summary.requests / secs,
    math.floor(latency:percentile(50)), math.floor(latency:percentile(90)),
    math.floor(latency:percentile(99)), latency.mean, math.floor(latency.max),
    e.connect, e.read, e.write, e.status, e.timeout, s200, sother))
end
