-- _route (included by the scripts that put entries back in the queue): an entry of
-- priority 0 goes to the ready list, any other to the prio sorted set, scored so that
-- ZRANGE gives priority 100 first and FIFO within a priority:
--   score = (100 - priority) * 2^44 + 2^43 + n   (n counts up for the back, down for the
--   front), an exact integer below 2^53. Priorities > 0 sort below 100 * 2^44: they run
-- before the ready list, the others after it. See protocol/flow.py for the header.
local PRIO_STEP = 17592186044416
local PRIO_MID = 8796093022208
local PRIO_ZERO = 100 * PRIO_STEP
-- Pushed onto an empty ready list with an entry of priority != 0, so that a worker
-- blocked on the list (BLMOVE) wakes for it; fetch.lua drops it. Never a valid entry.
local BELL = '\031rr1:bell'

-- The priority and the limit key (or nil) in an entry's header.
local function marks(v)
  if string.sub(v, 1, 5) ~= '\031rr1:' then
    return 0, nil
  end
  local c1 = string.find(v, ':', 6, true)
  local c2 = c1 and string.find(v, ':', c1 + 1, true)
  if not c2 then
    return 0, nil
  end
  local pos, p, key = c2 + 1, 0, nil
  if string.byte(v, pos) == 33 then
    local c = string.find(v, ':', pos, true)
    if not c then
      return 0, nil
    end
    p = tonumber(string.sub(v, pos + 1, c - 1)) or 0
    pos = c + 1
  end
  if string.byte(v, pos) == 64 then
    local c = string.find(v, ':', pos, true)
    if c then
      key = string.sub(v, pos + 1, c - 1)
    end
  end
  return p, key
end

-- Put one entry back: at the back of its priority (front: at the front, for entries
-- given back unstarted or recovered).
local function route(ready, prio, seq, v, front)
  local p = marks(v)
  if p == 0 then
    if front then
      redis.call('RPUSH', ready, v)
    else
      redis.call('LPUSH', ready, v)
    end
    return
  end
  if p > 100 then p = 100 elseif p < -100 then p = -100 end
  if redis.call('LLEN', ready) == 0 then
    redis.call('LPUSH', ready, BELL)
  end
  local n
  if front then
    n = PRIO_MID - redis.call('HINCRBY', seq, 'f', 1)
  else
    n = PRIO_MID + redis.call('HINCRBY', seq, 'b', 1)
  end
  redis.call('ZADD', prio, string.format('%.0f', (100 - p) * PRIO_STEP + n), v)
end
