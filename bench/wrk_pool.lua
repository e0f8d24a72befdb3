-- wrk script for bench/ingress.py: POST signed, unique DT pushes from a pregenerated pool.
--
--   wrk -t2 -c16 -d8s --latency -s bench/wrk_pool.lua http://127.0.0.1:PORT/dt/events -- POOL NTHREADS
--
-- POOL has one push per line: "<compact JSON body>\t<X-Dt-Signature token>". wrk thread k
-- (0-based, numbered in setup()) takes lines k, k+N, k+2N, ... so no two threads ever send
-- the same push, and each thread walks its share once, in order. Requests are formatted up
-- front in init(), so request() costs the load generator nothing but a table lookup.
-- Should a thread run out of pool it starts over and sets `wrapped`; the Python side
-- then treats the run as invalid (repeated eventIds) and retries with a bigger pool.
--
-- done() prints one line "WRK_RESULT {json}" with the totals, latency percentiles (µs)
-- and per-thread counters (requests issued, pool share, wrapped) for the Python side.

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("tid", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

local requests_pool = {}
local position = 0
issued = 0
pool_size = 0
wrapped = 0

function init(args)
   local path = args[1]
   local nthreads = tonumber(args[2])
   if path == nil or nthreads == nil then
      error("usage: wrk ... -s wrk_pool.lua URL -- POOL NTHREADS")
   end
   local file = assert(io.open(path, "rb"))
   local line_no = 0
   for line in file:lines() do
      if line_no % nthreads == tid then
         local tab = string.find(line, "\t", 1, true)
         local body = string.sub(line, 1, tab - 1)
         local token = string.sub(line, tab + 1)
         local headers = {
            ["Content-Type"] = "application/json",
            ["X-Dt-Signature"] = token,
         }
         requests_pool[#requests_pool + 1] = wrk.format("POST", nil, headers, body)
      end
      line_no = line_no + 1
   end
   file:close()
   pool_size = #requests_pool
   if pool_size == 0 then
      error("wrk_pool.lua: empty pool share for thread " .. tid)
   end
end

function request()
   position = position + 1
   if position > pool_size then
      position = 1
      wrapped = 1
   end
   issued = issued + 1
   return requests_pool[position]
end

function done(summary, latency, requests)
   local e = summary.errors
   local mean = latency.mean
   if mean ~= mean then mean = 0 end -- NaN when nothing was answered
   local per_thread = {}
   for _, thread in ipairs(threads) do
      per_thread[#per_thread + 1] = string.format(
         '{"issued":%d,"pool_size":%d,"wrapped":%d}',
         thread:get("issued"), thread:get("pool_size"), thread:get("wrapped"))
   end
   io.write(string.format(
      'WRK_RESULT {"duration_us":%d,"requests":%d,"bytes":%d,'
         .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
         .. '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d},"threads":[%s]}\n',
      summary.duration, summary.requests, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      table.concat(per_thread, ",")))
end
