-- wrk script: POST a 1 KiB JSON body (Content-Type: application/json) on
-- every request, and print a machine-readable summary line at the end
-- (bench/run reads it; latencies in microseconds).
local prefix = '{"kind":"bench","deviceId":"00000000-0000-0000-0000-000000000000","padding":"'
local suffix = '"}'
wrk.method = "POST"
wrk.body = prefix .. string.rep("x", 1024 - #prefix - #suffix) .. suffix
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
   local seconds = summary.duration / 1e6
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d rps=%.1f p50_us=%d p99_us=%d max_us=%d errors=%d non2xx=%d body_bytes=%d\n",
      summary.requests, summary.requests / seconds,
      latency:percentile(50.0), latency:percentile(99.0), latency.max,
      e.connect + e.read + e.write + e.timeout, e.status, #wrk.body))
end
