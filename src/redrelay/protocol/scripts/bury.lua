#!lua flags=allow-oom
-- bury: move one delivery to the dead letters, with its record; trim the oldest past the cap.
--
-- KEYS[1] inflight   hash   the consumer's deliveries
-- KEYS[2] dead       zset   id -> time of death (server ms)
-- KEYS[3] dead_data  hash   id -> record (JSON made by the client: entry, reason, traceback)
-- KEYS[4] stats      hash
-- KEYS[5] started    hash   the consumer's marked tags
-- KEYS[6] history    hash   per-minute/per-hour counters (see _count.lua)
-- ARGV[1] delivery tag; ARGV[2] message id; ARGV[3] record; ARGV[4] cap (0: no cap)
-- For a consumer that stores results (results.md), also:
-- KEYS[7] job hash (the message's record); KEYS[8] cancels set; KEYS[9] running set;
-- KEYS[10] results zset (see complete.lua); KEYS[11] this call's result bucket hash;
-- ARGV[5] result TTL ms; ARGV[6] failure (JSON); ARGV[7] done channel (pub/sub);
-- ARGV[8] 1 if the message is tracked (put with a record), else 0
--
-- Returns 1, or 0 if the tag was not held (stale consumer: rejected, nothing written).
-- @include count
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  count_outcome(KEYS[4], KEYS[6], 'rejected', 1)
  return 0
end
redis.call('HDEL', KEYS[5], ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now, ARGV[2])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
count_outcome(KEYS[4], KEYS[6], 'dead', 1)
local cap = tonumber(ARGV[4])
if cap > 0 then
  local over = redis.call('ZCARD', KEYS[2]) - cap
  if over > 0 then
    local old = redis.call('ZRANGE', KEYS[2], 0, over - 1)
    redis.call('ZREM', KEYS[2], unpack(old))
    redis.call('HDEL', KEYS[3], unpack(old))
    redis.call('HINCRBY', KEYS[4], 'dead_dropped', #old)
  end
end
if KEYS[7] and ARGV[8] == '0' then
  -- An untracked message has no record (nor a running mark, nor a cancel): its failure
  -- goes to a result bucket, as complete.lua writes outcomes, so that a dead letter
  -- requeued and run again is read by its newest outcome.
  local ttl = tonumber(ARGV[5])
  redis.call('HSET', KEYS[11], ARGV[2], 'f' .. ARGV[6])
  redis.call('ZADD', KEYS[10], now + ttl, KEYS[11])
  redis.call('PEXPIREAT', KEYS[11], now + 2 * ttl)
  redis.call('PUBLISH', ARGV[7], ARGV[2])
elseif KEYS[7] then
  -- The failure is stored with the death, in the same step (results.md), in the
  -- message's own record (a death is rare: no result bucket).
  redis.call('HSET', KEYS[7], 's', 'fail', 'v', ARGV[6], 'e', '')
  redis.call('PEXPIRE', KEYS[7], tonumber(ARGV[5]))
  redis.call('SREM', KEYS[8], ARGV[2])
  redis.call('SREM', KEYS[9], ARGV[2])
  redis.call('PUBLISH', ARGV[7], ARGV[2])
end
return 1
