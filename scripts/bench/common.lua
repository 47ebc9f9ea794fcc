-- Shared by the ingest benchmark scripts (loaded with dofile by track.lua and batch.lua).
-- Arguments after `--` on the wrk command line: RUN_ID [PER_REQUEST]. Every message gets the unique
-- messageId "<RUN_ID>-<thread>-<n>", so the server's dedup never drops one and the stored rows of one
-- run can be counted with `message_id LIKE '<RUN_ID>-%'`.

local counter = 0
thread_no = 1 -- global: setup() overwrites it per thread with thread:set
local threads = {}
local run_id = "run"
per_request = 1

function setup(thread)
  thread:set("thread_no", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  run_id = args[1] or "run"
  per_request = tonumber(args[2] or "1")
end

function next_message()
  counter = counter + 1
  local n = tostring(thread_no) .. "-" .. tostring(counter)
  return '{"type":"track","event":"feature_toggled","anonymousId":"a-' .. n ..
    '","messageId":"' .. run_id .. '-' .. n ..
    '","properties":{"feature_name":"dark_mode","new_status":true}}'
end

-- One machine-readable line the bench script parses (latencies in microseconds).
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d status_errors=%d connect_errors=%d read_errors=%d " ..
    "write_errors=%d timeouts=%d p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
