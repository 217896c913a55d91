-- GET /order/{id} for the scale-out benchmark (bench/scale.sh):
--   wrk ... -s bench/wrk/get_order_scale.lua URL -- ids.txt UNKNOWN_RATIO [HOT_FRACTION HOT_SHARE]
-- UNKNOWN_RATIO of the requests ask for a fresh random id that is not stored (never the same twice, so neither the
-- cache nor its negative entries can answer: each is a miss that the service must look up in PostgreSQL). The
-- rest pick a stored id: uniformly, or, with HOT_FRACTION and HOT_SHARE, HOT_SHARE of them among the first
-- HOT_FRACTION of the ids (say 0.1 and 0.9: nine requests in ten go to a tenth of the orders).
local known = {}
local unknown_ratio, hot_count, hot_share = 0, 0, 0
local alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
local counter = 0

function init(args)
   local path = args[1] or "ids.txt"
   unknown_ratio = tonumber(args[2] or "0")
   math.randomseed(os.time() + math.floor(os.clock() * 1000000))
   for id in io.lines(path) do
      if #id > 0 then
         known[#known + 1] = wrk.format("GET", "/order/" .. id)
      end
   end
   if #known == 0 and unknown_ratio < 1 then
      error("no ids in " .. path)
   end
   if args[3] then
      hot_count = math.max(1, math.floor(#known * tonumber(args[3])))
      hot_share = tonumber(args[4] or "0.9")
   end
end

local function fresh_unknown()
   -- A prefix the generator never produces, a counter and random letters: unique within this run.
   counter = counter + 1
   local chars = {}
   for i = 1, 8 do
      local k = math.random(#alphabet)
      chars[i] = alphabet:sub(k, k)
   end
   return wrk.format("GET", "/order/zz-" .. table.concat(chars) .. "-" .. counter)
end

function request()
   if unknown_ratio > 0 and math.random() < unknown_ratio then
      return fresh_unknown()
   end
   if hot_count > 0 and math.random() < hot_share then
      return known[math.random(hot_count)]
   end
   return known[math.random(#known)]
end
