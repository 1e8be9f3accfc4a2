#!lua flags=allow-oom
-- topic_bury: acknowledge an entry in the group and keep it as a dead letter of the group.
--
-- KEYS[1] stream
-- KEYS[2] dead       zset  message id -> time of death (server ms)
-- KEYS[3] dead_data  hash  message id -> record (JSON made by the client)
-- KEYS[4] failures   hash
-- KEYS[5] stats      hash
-- KEYS[6] started    hash  marks of started redeliveries
-- KEYS[7] history   hash  per-minute/per-hour counters (see _count.lua)
-- ARGV[1] group; ARGV[2] consumer id; ARGV[3] stream id; ARGV[4] message id;
-- ARGV[5] record; ARGV[6] cap (0: no cap)
--
-- Returns 1, or 0 if this consumer no longer held the entry (rejected, nothing written).
-- @include count
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2]) == 0 then
  count_outcome(KEYS[5], KEYS[7], 'rejected', 1)
  return 0
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('HDEL', KEYS[4], ARGV[3])
redis.call('HDEL', KEYS[6], ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now, ARGV[4])
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
count_outcome(KEYS[5], KEYS[7], 'dead', 1)
local cap = tonumber(ARGV[6])
if cap > 0 then
  local over = redis.call('ZCARD', KEYS[2]) - cap
  if over > 0 then
    local old = redis.call('ZRANGE', KEYS[2], 0, over - 1)
    redis.call('ZREM', KEYS[2], unpack(old))
    redis.call('HDEL', KEYS[3], unpack(old))
    redis.call('HINCRBY', KEYS[5], 'dead_dropped', #old)
  end
end
return 1
