-- POST the same body on every request; a JSON summary is printed at the end.
--
-- usage: wrk -s bench/wrk/post.lua URL -- BODY_FILE [CONTENT_TYPE]
-- The summary line starts with "JSON " so the benchmark can find it among wrk's own output.
-- Each thread also sums the server's own time per request, read from the Server-Timing
-- header ("app;dur=<milliseconds>") when the server sends one.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local path = args[1]
  local file = assert(io.open(path, "rb"), "cannot open body file " .. tostring(path))
  wrk.method = "POST"
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["Content-Type"] = args[2] or "application/json"
  timed_sum = 0
  timed_count = 0
  non_2xx = 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non_2xx = non_2xx + 1
  end
  local timing = headers["Server-Timing"] or headers["server-timing"]
  if timing then
    local dur = tonumber(string.match(timing, "dur=([%d%.]+)"))
    if dur then
      timed_sum = timed_sum + dur
      timed_count = timed_count + 1
    end
  end
end

function done(summary, latency, requests)
  local timed_sum_all, timed_count_all, non_2xx_all = 0, 0, 0
  for _, thread in ipairs(threads) do
    timed_sum_all = timed_sum_all + (thread:get("timed_sum") or 0)
    timed_count_all = timed_count_all + (thread:get("timed_count") or 0)
    non_2xx_all = non_2xx_all + (thread:get("non_2xx") or 0)
  end
  local seconds = summary.duration / 1e6
  local server_ms = "null"
  if timed_count_all > 0 then
    server_ms = string.format("%.4f", timed_sum_all / timed_count_all)
  end
  io.write(string.format(
    'JSON {"requests": %d, "seconds": %.3f, "rps": %.1f, "bytes": %d, ' ..
    '"p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, "mean_ms": %.3f, ' ..
    '"errors_connect": %d, "errors_read": %d, "errors_write": %d, "errors_timeout": %d, ' ..
    '"errors_status": %d, "non_2xx": %d, "server_ms": %s}\n',
    summary.requests, seconds, summary.requests / seconds, summary.bytes,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3, latency.mean / 1e3,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
    summary.errors.status, non_2xx_all, server_ms))
end
