-- wrk script: realistic ThingSpace callbacks (CarrierService result, about
-- 0.5 KB) with a distinct requestId on every request, so each one is a new
-- durable row, not a duplicate. Prints the same RESULT line as post-1k.lua.
local threads = {}
local counter = 0
thread_id = 0  -- each thread gets its own through setup()


function setup(thread)
   thread:set("thread_id", #threads + 1)
   table.insert(threads, thread)
end

function init(args)
   math.randomseed(os.time() + thread_id)
   run_id = string.format("%08x", math.random(0, 0x7fffffff))
end

local template = [[{"username":"listener-user","password":"listener-pass","requestId":"%s-%d-%d",]] ..
   [["deviceIds":[{"id":"22211315718","kind":"ESN"}],]] ..
   [["deviceResponse":{"changeIdentifierResponse":{"deviceIds":[{"id":"A1000001999990","kind":"iccid"}],"servicePlan":"M2M_4G"}},]] ..
   [["status":"Success","callbackCount":1,"maxCallbackThreshold":4}]]

function request()
   counter = counter + 1
   local body = string.format(template, run_id, thread_id, counter)
   return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["User-Agent"] = "Verizon's callback service"}, body)
end

function done(summary, latency, requests)
   local seconds = summary.duration / 1e6
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d rps=%.1f p50_us=%d p99_us=%d max_us=%d errors=%d non2xx=%d body_bytes=%d\n",
      summary.requests, summary.requests / seconds,
      latency:percentile(50.0), latency:percentile(99.0), latency.max,
      e.connect + e.read + e.write + e.timeout, e.status, 0))
end
