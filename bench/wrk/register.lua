-- POST /api/users with a new, unique e-mail each time (and a password: argon2 hashing).
-- BENCH_TAG makes the addresses unique across runs.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local tag = os.getenv("BENCH_TAG") or "run"
local counter = 0

function init(args)
  bench.init_thread()
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"name":"Load Test %d","email":"load-%s-%d-%d@bench.example.com","password":"correct horse battery"}',
    counter, tag, thread_id, counter)
  return wrk.format("POST", "/api/users", bench.json_headers(), body)
end
