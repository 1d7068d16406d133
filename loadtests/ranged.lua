-- wrk script: the raw ranged GETs equivalent to a list of tile requests (scripts/bench --s3).
-- Usage: wrk -t2 -c32 -d10s -s ranged.lua http://127.0.0.1:PORT -- ranges.txt
-- Each line of ranges.txt is "PATH RANGE": a presigned object URL's path and query, and a
-- Range header value (bytes=first-last). Threads start at different offsets and walk the list
-- in order (wrapping), as walk.lua does, and print the same RESULT line at the end.
local threads = {}
local counter, lines = 0, {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local file = args[1] or "ranges.txt"
  for line in io.lines(file) do
    local path, range = line:match("^(%S+)%s+(%S+)$")
    if path then lines[#lines + 1] = { path, range } end
  end
  if #lines == 0 then error("no ranges in " .. file) end
  counter = math.floor((id or 0) * #lines / 2)
end

function request()
  counter = counter + 1
  local item = lines[(counter % #lines) + 1]
  return wrk.format("GET", item[1], { Range = item[2] })
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT label=%s rps=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f requests=%d non2xx=%d socket_errors=%d MBps=%.2f\n",
    os.getenv("LABEL") or "ranged", summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout,
    summary.bytes / secs / 1048576))
end
