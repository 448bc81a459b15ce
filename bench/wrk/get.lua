-- GET a random record's path with its token. BENCH_DATA lines: PATH<TAB>TOKEN (token optional).
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local requests

function init(args)
  bench.init_thread()
  requests = bench.prebuild("get.lua", function(r)
    return wrk.format("GET", r[1], bench.auth(r[2]))
  end)
end

function request()
  return requests[math.random(#requests)]
end
