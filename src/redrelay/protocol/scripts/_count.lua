-- count: the snippet that queue scripts include with a line "-- @include count" (scripts.py
-- joins it into that one line, so line numbers in Lua errors stay those of the file).
--
-- count_outcome(stats, history, outcome, n) adds n to the lifetime counter `outcome` of the stats
-- hash and to the history hash: a ring of per-minute slots (2880: 48 hours) and one of
-- per-hour slots (720: 30 days). Field "m<minute % 2880>:<outcome>" holds
-- "<minute>:<count>"; a slot last written in an older round is overwritten, so the hash
-- never holds more than 3600 fields per outcome, with no trimming and no leader.
-- protocol/history.py reads it. (Not called "count": scripts have locals of that name.)
local function count_outcome(stats, history, outcome, n)
  if n <= 0 then
    return
  end
  redis.call('HINCRBY', stats, outcome, n)
  local t = redis.call('TIME')
  local minute = math.floor(tonumber(t[1]) / 60)
  local rings = {{'m', minute, 2880}, {'h', math.floor(minute / 60), 720}}
  for i = 1, 2 do
    local r = rings[i]
    local field = r[1] .. (r[2] % r[3]) .. ':' .. outcome
    local old = redis.call('HGET', history, field)
    local c = n
    if old then
      local sep = string.find(old, ':', 1, true)
      if sep and tonumber(string.sub(old, 1, sep - 1)) == r[2] then
        c = c + tonumber(string.sub(old, sep + 1))
      end
    end
    redis.call('HSET', history, field, string.format('%d:%d', r[2], c))
  end
end
