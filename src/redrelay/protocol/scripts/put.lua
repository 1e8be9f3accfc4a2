-- put: one message with a delay, a priority and/or a deduplication key (a plain put is a
-- bare LPUSH).
--
-- KEYS[1] ready         list
-- KEYS[2] delayed       zset  id -> due (server ms)
-- KEYS[3] delayed_data  hash  id -> entry
-- KEYS[4] prio          zset  entries of priority != 0 (see _route.lua)
-- KEYS[5] prio_seq      hash  prio's order counters
-- KEYS[6] dedup         string (optional) the id put under this deduplication key
-- ARGV[1] entry; ARGV[2] message id; ARGV[3] delay ms (0: ready now); ARGV[4] dedup TTL ms
--
-- Returns the id of the message now in the queue: ARGV[2], or the earlier id if the
-- deduplication key was already taken (then nothing is written).
-- @include route
if KEYS[6] then
  local ok = redis.call('SET', KEYS[6], ARGV[2], 'NX', 'PX', tonumber(ARGV[4]))
  if not ok then
    return redis.call('GET', KEYS[6])
  end
end
local delay = tonumber(ARGV[3])
if delay > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', KEYS[2], now + delay, ARGV[2])
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[1])
else
  route(KEYS[1], KEYS[4], KEYS[5], ARGV[1], false)
end
return ARGV[2]
