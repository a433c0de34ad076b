-- wrk script for bench/tls/run.sh: GET BENCH_PATH with x-project-id BENCH_PROJECT; with
-- BENCH_CLOSE=1 every request says Connection: close (wrk reconnects: one handshake per request).
-- done() prints one WRKJSON line (latency in us) with the count of 200s and other statuses.
local wrkjson = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "../wrkjson.lua")
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

done = wrkjson.done(threads, { "200", "other" })
