-- wrk script: POST initiate-call/ with a unique number per request (the duplicate window is
-- per number). Use against a service whose campaign CAMPAIGN exists (pause it to measure only
-- the durable accept path). wrk counts non-2xx answers itself ("Non-2xx or 3xx responses").
--   CAMPAIGN=1 TOKEN=... wrk -t2 -c64 -d15s --latency -s benches/initiate.lua http://127.0.0.1:8000
local thread_count = 0
function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  counter = 0
  base = 2000000000 + id * 100000000 + (os.time() % 50) * 1000000
  headers = { ["Content-Type"] = "application/json", ["X-Auth-Token"] = os.getenv("TOKEN") }
  campaign = os.getenv("CAMPAIGN") or "1"
end

function request()
  counter = counter + 1
  local body = string.format('{"phone_number":"+1%010d","campaign_id":%s}', base + counter, campaign)
  return wrk.format("POST", "/api/v1/initiate-call/", headers, body)
end

