-- wrk script for bench/api/run.sh: POST /api/v1/memories with a unique text per request.
-- Environment: BENCH_PROJECT (x-project-id), BENCH_TAG (makes subjects and texts unique per run),
-- BENCH_SUBJECT_MODE=unique (a new subject per request) | hot (every request to one subject).
-- Texts are "note <tag>-<thread>-<n> about <w1> <w2> <w3>": unique (so the duplicate check never
-- matches) and free of the patterns the heuristic extractor turns into claims, so each request is
-- the memory INSERT + the outbox INSERT only. done() prints one WRKJSON line (latency in us) with
-- the count of 201s, 200s (duplicates) and other statuses. Layers (bench/api/layers.sh):
-- BENCH_API_KEY adds `Authorization: Bearer <key>`; BENCH_IDEMPOTENCY=1 gives every request its own
-- Idempotency-Key.
-- BENCH_STATUS_COUNTS=0 leaves response() undefined, so wrk does not build a Lua table of every
-- response's headers: that costs the load generator about 9 us a request for a response with
-- the rate limit's two headers against under 1 us for one without, on the server's CPUs
-- (bench/api/interleave.sh, which counts the statuses from engramd's metrics instead). The
-- status counters are then 0.
local wrkjson = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "../wrkjson.lua")
local project = os.getenv("BENCH_PROJECT") or "bench"
local tag = os.getenv("BENCH_TAG") or "w"
local mode = os.getenv("BENCH_SUBJECT_MODE") or "unique"
local words = {
  "apple", "river", "stone", "cloud", "maple", "violet", "copper", "harbor", "meadow", "lantern",
  "pepper", "silver", "garden", "window", "thunder", "orchid", "marble", "candle", "forest", "pillow",
  "rocket", "saddle", "tunnel", "velvet", "walnut", "yellow", "zephyr", "basket", "cactus", "dragon",
  "falcon", "glacier",
}
local threads = {}
local headers = { ["Content-Type"] = "application/json", ["x-project-id"] = project }
local apikey = os.getenv("BENCH_API_KEY")
local idem = os.getenv("BENCH_IDEMPOTENCY") == "1"
if apikey and apikey ~= "" then headers["Authorization"] = "Bearer " .. apikey end

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  n = 0
  c201, c200, cother = 0, 0, 0
  math.randomseed(os.time() * 100 + (tid or 1))
end

function request()
  n = n + 1
  local id = tag .. "-" .. (tid or 1) .. "-" .. n
  local subject = mode == "hot" and ("hot-" .. tag) or ("s-" .. id)
  local text = "note " .. id .. " about " .. words[math.random(#words)] .. " " ..
    words[math.random(#words)] .. " " .. words[math.random(#words)]
  if idem then headers["Idempotency-Key"] = "k-" .. id end
  return wrk.format("POST", "/api/v1/memories", headers,
    '{"subject_id":"' .. subject .. '","text":"' .. text .. '"}')
end

if os.getenv("BENCH_STATUS_COUNTS") ~= "0" then
  function response(status, hdrs, body)
    if status == 201 and hdrs["Idempotent-Replayed"] == nil then c201 = c201 + 1
    elseif status == 200 then c200 = c200 + 1
    else cother = cother + 1 end
  end
end

done = wrkjson.done(threads, { "201", "200", "other" })
