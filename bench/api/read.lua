-- wrk script for bench/api/run.sh: GET requests cycling through BENCH_PATHS ('|'-separated request
-- targets), with x-project-id BENCH_PROJECT. done() prints one WRKJSON line (latency in us) with
-- the count of 200s and other statuses. BENCH_API_KEY adds `Authorization: Bearer <key>`.
-- BENCH_STATUS_COUNTS=0: no response(), and no status counts (see write.lua).
local wrkjson = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "../wrkjson.lua")
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

if os.getenv("BENCH_STATUS_COUNTS") ~= "0" then
  function response(status, hdrs, body)
    if status == 200 then c200 = c200 + 1 else cother = cother + 1 end
  end
end

done = wrkjson.done(threads, { "200", "other" })
