-- wrk script: POST one event per request, each with its own source_id so
-- every request is a real insert, not an idempotent repeat.
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  token = os.getenv("BENCH_TOKEN") or ""
  run_id = os.getenv("BENCH_RUN") or "run"
end

request = function()
  counter = counter + 1
  local body = string.format(
    '{"type":"bench.event","title":"Bench event %d","source":"bench","source_id":"%s-%d-%d",' ..
    '"actor_id":"u-bench","actor_name":"Bench","status":"success","tags":["bench"],"data":{"n":%d}}',
    counter, run_id, tid, counter, counter)
  return wrk.format("POST", "/api/v1/activities",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %.3f %.3f %.3f\n",
    summary.requests, summary.duration, summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.mean / 1000))
end
