-- wrk script: one first outcome callback (PUT callback/, PICKED) per call in flight, each call
-- once, the threads taking turns through the list of call ids in IDS (one UUID a line). A call
-- that got its callback is final, so a second one would be an idempotent repeat that writes
-- nothing: the script says so at the end if the list ran out during the run.
--   IDS=ids.txt TOKEN=... wrk -t4 -c64 -d15s --latency -s benches/callbacks.lua http://127.0.0.1:8000
local thread_count = 0
local threads = {}
function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  ids = {}
  for line in io.lines(os.getenv("IDS")) do
    ids[#ids + 1] = line
  end
  next_index = id + 1
  reused = 0
  refused = 0
  headers = { ["Content-Type"] = "application/json", ["X-Auth-Token"] = os.getenv("TOKEN") }
end

function request()
  local call_id = ids[next_index]
  if call_id == nil then
    reused = reused + 1
    call_id = ids[(next_index % #ids) + 1]
  end
  next_index = next_index + tonumber(os.getenv("THREADS") or "4")
  local body = '{"call_id":"' .. call_id .. '","status":"PICKED","call_duration":30}'
  return wrk.format("PUT", "/api/v1/callback/", headers, body)
end

function response(status, headers, body)
  if status ~= 200 then
    refused = refused + 1
  end
end

function done(summary, latency, requests)
  local reused_total, refused_total = 0, 0
  for _, thread in ipairs(threads) do
    reused_total = reused_total + thread:get("reused")
    refused_total = refused_total + thread:get("refused")
  end
  io.write(string.format("callbacks: %d in %.1f s = %.0f/s; latency p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms; non-200: %d; ids reused (list ran out): %d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, latency.max / 1000,
    refused_total, reused_total))
end
