-- wrk script for bench/health/run.sh: no request()/response() hooks (keeps wrk's static fast path);
-- done() prints the WRKJSON line of bench/wrkjson.lua.
local wrkjson = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "../wrkjson.lua")
done = wrkjson.done()
