-- Shared by the ingest benchmark scripts (loaded with dofile by track.lua and batch.lua).
-- Arguments after `--` on the wrk command line: RUN_ID [PER_REQUEST] [IDS]. Every message gets the
-- unique messageId "<RUN_ID>-<thread>-<n>", ascending, so the server's dedup never drops one and the
-- stored rows of one run can be counted with `message_id LIKE '<RUN_ID>-%'`. With IDS = "random" it
-- is "<RUN_ID>-<a random v4 UUID>" instead, as Segment's libraries send (random keys cost the log's
-- messageId index a page per message; BENCHMARKS.md, "Random messageIds").

local counter = 0
thread_no = 1 -- global: setup() overwrites it per thread with thread:set
local threads = {}
local run_id = "run"
per_request = 1
local random_ids = false

function setup(thread)
  thread:set("thread_no", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  run_id = args[1] or "run"
  per_request = tonumber(args[2] or "1")
  random_ids = args[3] == "random"
  math.randomseed(os.time() + thread_no * 7919 + math.floor(os.clock() * 1e6))
end

function next_message()
  counter = counter + 1
  local n = tostring(thread_no) .. "-" .. tostring(counter)
  local id = n
  if random_ids then
    id = string.format("%08x-%04x-4%03x-%04x-%04x%08x", math.random(0, 0xffffffff),
      math.random(0, 0xffff), math.random(0, 0xfff), math.random(0x8000, 0xbfff),
      math.random(0, 0xffff), math.random(0, 0xffffffff))
  end
  return '{"type":"track","event":"feature_toggled","anonymousId":"a-' .. n ..
    '","messageId":"' .. run_id .. '-' .. id ..
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
