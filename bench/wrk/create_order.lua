-- POST /api/orders as a random user with that user's token, 1-3 random items.
-- BENCH_DATA lines: USER_ID<TAB>TOKEN. With BENCH_RECORD set, records each response's order
-- id and created_at (the pipeline scenario); with BENCH_RATE set, paces itself.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local requests = {}
local prices = { "9.99", "19.90", "29.99", "4.50", "120.00", "0.99", "54.25" }

function init(args)
  bench.init_thread()
  local users = bench.records()
  assert(#users > 0, "create_order.lua: no records in BENCH_DATA")
  -- A fixed set of pre-built requests per thread keeps the generator cheap.
  for i = 1, 2000 do
    local user = users[math.random(#users)]
    local items = {}
    for n = 1, math.random(3) do
      items[n] = string.format('{"product_id":"sku-%d","quantity":%d,"price":%s}',
        math.random(500), math.random(5), prices[math.random(#prices)])
    end
    local body = string.format('{"user_id":"%s","items":[%s],"shipping_address":"%d Bench Street, Loopback City"}',
      user[1], table.concat(items, ","), math.random(999))
    requests[i] = wrk.format("POST", "/api/orders", bench.json_headers(user[2]), body)
  end
end

-- Defined at load time (wrk asks each script state whether it wants responses).
if (os.getenv("BENCH_RECORD") or "") ~= "" then
  response = bench.recording_response
end

function request()
  return requests[math.random(#requests)]
end
