-- GET /order/{id} for ids picked at random from a file of existing ids (one per line), given after `--`:
--   wrk -t1 -c64 -d10s -s bench/wrk/get_order.lua http://127.0.0.1:18081 -- ids.txt
-- The requests are formatted once in init, so the load generator spends its CPU on sending, not on Lua.
local requests = {}

function init(args)
   local path = args[1] or "ids.txt"
   for id in io.lines(path) do
      if #id > 0 then
         requests[#requests + 1] = wrk.format("GET", "/order/" .. id)
      end
   end
   if #requests == 0 then
      error("no ids in " .. path)
   end
   math.randomseed(os.time())
end

function request()
   return requests[math.random(#requests)]
end
