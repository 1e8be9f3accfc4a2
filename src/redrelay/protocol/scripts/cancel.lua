#!lua flags=allow-oom
-- cancel: ask one tracked message not to run, or to stop.
--
-- KEYS[1] job           hash  the message's record (see complete.lua)
-- KEYS[2] delayed       zset  id -> due (server ms)
-- KEYS[3] delayed_data  hash  id -> entry
-- KEYS[4] cancels       set   ids of running messages asked to stop
-- KEYS[5] stats         hash  counters
-- ARGV[1] message id; ARGV[2] TTL ms of the record of a message removed here;
-- ARGV[3] done channel (pub/sub, not a key)
--
-- Returns 1 when a queued or delayed message will never run (a delayed one is removed
-- now; a queued one is skipped by the worker that takes it, see complete.lua), 2 when a
-- running one was asked to stop (its worker sees it within a heartbeat), 0 when the
-- message is unknown, expired or already finished.
local s = redis.call('HGET', KEYS[1], 's')
if not s or s == 'ok' or s == 'fail' or s == 'x' then
  return 0
end
if s == 'r' then
  redis.call('HSET', KEYS[1], 'c', '1')
  redis.call('SADD', KEYS[4], ARGV[1])
  return 2
end
redis.call('HSET', KEYS[1], 's', 'x', 'v', '')
redis.call('HINCRBY', KEYS[5], 'cancelled', 1)
if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then
  -- Removed: nothing will come to finish the record, so it expires like a result.
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
