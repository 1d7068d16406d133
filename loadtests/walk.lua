-- wrk script: cycle through a list of request paths (one per line).
-- Usage: wrk -t1 -c4 -d5s --timeout 10s -s loadtests/walk.lua http://127.0.0.1:8080 -- paths.txt
-- Each thread starts at a different offset of the list and walks it in order (wrapping around).
-- VARY_ACCEPT=1 sends a different Accept header each time (a miss in every per-URL cache, so
-- every request is planned and its identifier looked up again; the response is the same).
-- At the end it prints one machine-readable line:
--   RESULT rps=... p50_ms=... p99_ms=... max_ms=... requests=... non2xx=... socket_errors=...
local threads = {}
local counter, paths = 0, {}
local vary = os.getenv("VARY_ACCEPT") == "1"

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local file = args[1] or "paths.txt"
  for line in io.lines(file) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  if #paths == 0 then error("no paths in " .. file) end
  counter = math.floor((id or 0) * #paths / 2)
end

function request()
  counter = counter + 1
  local headers = nil
  if vary then
    headers = { Accept = string.format("*/*;q=0.%03d", counter % 1000) }
  end
  return wrk.format("GET", paths[(counter % #paths) + 1], headers)
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT rps=%.1f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f requests=%d non2xx=%d socket_errors=%d\n",
    summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, summary.requests, e.status, e.connect + e.read + e.write + e.timeout))
end
