-- Like get_order.lua, but one request in ten asks for an id that does not exist (a well-formed order_uid that is
-- not stored, one of a thousand: the first request for each reads PostgreSQL, the later ones are answered by the
-- negative cache, without touching PostgreSQL).
--   wrk -t1 -c64 -d10s -s bench/wrk/get_order_mixed.lua http://127.0.0.1:18081 -- ids.txt
local known, unknown = {}, {}
local alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

local function random_uid()
   local chars = {}
   for i = 1, 19 do
      local k = math.random(#alphabet)
      chars[i] = alphabet:sub(k, k)
   end
   -- A prefix the generator never produces keeps these ids unknown.
   return "zz-unknown-" .. table.concat(chars)
end

function init(args)
   local path = args[1] or "ids.txt"
   math.randomseed(os.time())
   for id in io.lines(path) do
      if #id > 0 then
         known[#known + 1] = wrk.format("GET", "/order/" .. id)
      end
   end
   if #known == 0 then
      error("no ids in " .. path)
   end
   for i = 1, 1000 do
      unknown[i] = wrk.format("GET", "/order/" .. random_uid())
   end
end

function request()
   if math.random(10) == 1 then
      return unknown[math.random(#unknown)]
   end
   return known[math.random(#known)]
end
