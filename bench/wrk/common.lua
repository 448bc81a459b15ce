-- Shared by the benchmark's wrk scripts (loaded with dofile). Configured by environment:
--   BENCH_DATA     a tab-separated data file, one record a line (read by every thread)
--   BENCH_SEED     base of each thread's random seed (deterministic runs)
--   BENCH_RATE     if > 0, pace the whole run to about this many requests per second
--   BENCH_THREADS  wrk's -t (for pacing)
--   BENCH_RECORD   a folder: each thread appends "status<TAB>id<TAB>created_at" per response
-- done() prints one line "BENCH_RESULT {json}" that the harness parses.

bench = {}

function bench.split(line)
  local fields = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do
    fields[#fields + 1] = field
  end
  return fields
end

function bench.records()
  local path = os.getenv("BENCH_DATA")
  local records = {}
  if path and path ~= "" then
    for line in io.lines(path) do
      if line ~= "" then
        records[#records + 1] = bench.split(line)
      end
    end
  end
  return records
end

-- One pre-built request per BENCH_DATA record (built once per thread: a cheap generator).
function bench.prebuild(script, build)
  local requests = {}
  for _, r in ipairs(bench.records()) do
    requests[#requests + 1] = build(r)
  end
  assert(#requests > 0, script .. ": no records in BENCH_DATA")
  return requests
end

function bench.auth(token)
  local headers = {}
  if token and token ~= "" then
    headers["Authorization"] = "Bearer " .. token
  end
  return headers
end

function bench.json_headers(token)
  local headers = bench.auth(token)
  headers["Content-Type"] = "application/json"
  return headers
end

-- Threads are numbered in setup() so that each seeds its generator differently.
local next_thread = 0
function setup(thread)
  next_thread = next_thread + 1
  thread:set("thread_id", next_thread)
end

function bench.init_thread()
  thread_id = thread_id or 0
  math.randomseed(tonumber(os.getenv("BENCH_SEED") or "1") * 1000 + thread_id)
  local folder = os.getenv("BENCH_RECORD")
  if folder and folder ~= "" then
    bench.record = io.open(folder .. "/thread-" .. thread_id .. ".tsv", "a")
    bench.record:setvbuf("line")
  end
end

-- Pacing: request n of a thread is due at the thread's first request plus n intervals of
-- threads / BENCH_RATE seconds, on the monotonic clock (through LuaJIT's FFI: os.time() counts
-- whole seconds). wrk asks delay() before each request, and a connection waits for the next
-- slot. A service slower than the rate gets no delay and falls behind, and the run shows what it
-- sustained. (The earlier pacer corrected a think time once a second from the last second's
-- count: it never made up a short second and ran about 2 % under the rate.)
local rate = tonumber(os.getenv("BENCH_RATE") or "0")
if rate > 0 then
  local ffi = require("ffi")
  ffi.cdef [[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clock, bench_timespec *now);
  ]]
  local CLOCK_MONOTONIC = 1
  local clock = ffi.new("bench_timespec")
  local function now_ms()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
    return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
  end
  local threads = tonumber(os.getenv("BENCH_THREADS") or "2")
  local interval = 1000 * threads / rate
  local first, sent
  function delay()
    local now = now_ms()
    if not first then first, sent = now, 0 end
    local due = first + sent * interval
    sent = sent + 1
    if due <= now then return 0 end
    return math.ceil(due - now)
  end
end

function bench.recording_response(status, headers, body)
  if bench.record then
    local id = body:match('"id"%s*:%s*"([^"]+)"') or ""
    local created = body:match('"created_at"%s*:%s*"([^"]+)"') or ""
    bench.record:write(status, "\t", id, "\t", created, "\n")
  end
end

local function json_number(x)
  if x ~= x or x == math.huge or x == -math.huge then return "null" end
  return string.format("%.3f", x)
end

function done(summary, latency, requests)
  local e = summary.errors
  local parts = {
    '"duration_us":' .. summary.duration,
    '"requests":' .. summary.requests,
    '"bytes":' .. summary.bytes,
    '"errors_connect":' .. e.connect,
    '"errors_read":' .. e.read,
    '"errors_write":' .. e.write,
    '"errors_status":' .. e.status,
    '"errors_timeout":' .. e.timeout,
    '"latency_mean_us":' .. json_number(latency.mean),
    '"latency_max_us":' .. json_number(latency.max),
    '"latency_p50_us":' .. json_number(latency:percentile(50)),
    '"latency_p90_us":' .. json_number(latency:percentile(90)),
    '"latency_p99_us":' .. json_number(latency:percentile(99)),
    '"latency_p999_us":' .. json_number(latency:percentile(99.9)),
  }
  io.write("BENCH_RESULT {" .. table.concat(parts, ",") .. "}\n")
end
