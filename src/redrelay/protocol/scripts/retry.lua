#!lua flags=allow-oom
-- retry: move one delivery back to ready (the back of the queue) or to delayed.
--
-- KEYS[1] inflight      hash   the consumer's deliveries
-- KEYS[2] ready         list
-- KEYS[3] delayed       zset   id -> due (server ms)
-- KEYS[4] delayed_data  hash   id -> entry
-- KEYS[5] stats         hash
-- KEYS[6] started       hash   the consumer's marked tags
-- KEYS[7] history       hash   per-minute/per-hour counters (see _count.lua)
-- ARGV[1] delivery tag; ARGV[2] new entry (header rewritten by the client); ARGV[3] delay ms;
-- ARGV[4] message id (member of the delayed set)
--
-- Returns 1, or 0 if the tag was not held (stale consumer: rejected, nothing written).
-- @include count
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  count_outcome(KEYS[5], KEYS[7], 'rejected', 1)
  return 0
end
redis.call('HDEL', KEYS[6], ARGV[1])
local delay = tonumber(ARGV[3])
if delay > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', KEYS[3], now + delay, ARGV[4])
  redis.call('HSET', KEYS[4], ARGV[4], ARGV[2])
else
  redis.call('LPUSH', KEYS[2], ARGV[2])
end
count_outcome(KEYS[5], KEYS[7], 'retried', 1)
return 1
