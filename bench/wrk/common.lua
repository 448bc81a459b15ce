-- Shared by the benchmark's wrk scripts (loaded with dofile). Configured by environment:
--   BENCH_DATA     a tab-separated data file, one record a line (read by every thread)
--   BENCH_SEED     base of each thread's random seed (deterministic runs)
--   BENCH_RATE     if > 0, pace the whole run to about this many requests per second
--   BENCH_THREADS, BENCH_CONNECTIONS   wrk's -t and -c (for pacing)
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

-- Pacing: a think time per connection, corrected once a second towards the target rate.
local rate = tonumber(os.getenv("BENCH_RATE") or "0")
if rate > 0 then
  local threads = tonumber(os.getenv("BENCH_THREADS") or "2")
  local connections = tonumber(os.getenv("BENCH_CONNECTIONS") or "64")
  local target = rate / threads
  local think = 1000 * (connections / threads) / target
  local second, count, first = os.time(), 0, true
  function delay()
    local now = os.time()
    if now ~= second then
      if not first and count > 0 then
        local ratio = count / target / (now - second)
        if ratio < 0.5 then ratio = 0.5 elseif ratio > 2 then ratio = 2 end
        think = think * ratio
      end
      first, second, count = false, now, 0
    end
    count = count + 1
    return math.floor(think)
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
