-- GET /order/{id} for ids picked at random from a file of existing ids (one per line), given after `--`, and
-- optionally a share of requests for ids that do not exist:
--   wrk -t1 -c64 -d10s -s bench/wrk/get_order.lua http://127.0.0.1:18081 -- ids.txt [UNKNOWN_SHARE]
-- With UNKNOWN_SHARE (0.1: one request in ten) those requests ask for one of a thousand well-formed order_uids that
-- are not stored: the first request for each reads PostgreSQL, the later ones are answered by the negative cache,
-- without touching PostgreSQL. (get_order_scale.lua asks for a fresh unknown id every time instead.)
-- The requests are formatted once in init, so the load generator spends its CPU on sending, not on Lua.
local known, unknown = {}, {}
local unknown_share = 0
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
   unknown_share = tonumber(args[2] or "0")
   math.randomseed(os.time())
   for id in io.lines(path) do
      if #id > 0 then
         known[#known + 1] = wrk.format("GET", "/order/" .. id)
      end
   end
   if #known == 0 then
      error("no ids in " .. path)
   end
   if unknown_share > 0 then
      for i = 1, 1000 do
         unknown[i] = wrk.format("GET", "/order/" .. random_uid())
      end
   end
end

function request()
   if unknown_share > 0 and math.random() < unknown_share then
      return unknown[math.random(#unknown)]
   end
   return known[math.random(#known)]
end
