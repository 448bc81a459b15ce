-- POST /api/auth/login for a random account. BENCH_DATA lines: EMAIL<TAB>PASSWORD.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local requests

function init(args)
  bench.init_thread()
  requests = bench.prebuild("login.lua", function(r)
    local body = string.format('{"email":"%s","password":"%s"}', r[1], r[2])
    return wrk.format("POST", "/api/auth/login", bench.json_headers(), body)
  end)
end

function request()
  return requests[math.random(#requests)]
end
