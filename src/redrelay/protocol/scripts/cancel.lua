#!lua flags=allow-oom
-- cancel: ask one tracked message not to run, or to stop.
--
-- KEYS[1] job           hash  the message's record (see complete.lua; field e holds its
--                             entry while it is queued, as the producer wrote it, and is
--                             emptied once a worker took it)
-- KEYS[2] delayed       zset  id -> due (server ms)
-- KEYS[3] delayed_data  hash  id -> entry
-- KEYS[4] cancels       set   ids of taken messages asked to stop
-- KEYS[5] stats         hash  counters
-- KEYS[6] ready         list
-- KEYS[7] prio          zset  queued entries of priority != 0 (see _route.lua)
-- KEYS[8] running       set   ids of taken messages (complete.lua)
-- ARGV[1] message id; ARGV[2] TTL ms of the record of a message removed here;
-- ARGV[3] done channel (pub/sub, not a key)
--
-- A queued or delayed message is removed here, atomically with respect to the fetch that
-- would take it (ZREM from delayed, else LREM of its entry from ready: O(queue length),
-- paid by the cancel only), so it never runs. One already taken by a worker is asked to
-- stop: its worker sees the id in the cancels set within a heartbeat (and skips it if it
-- has not started yet).
-- A finished message has no record here (its outcome is in a result bucket), so it is
-- answered 0 like an unknown one.
-- Returns 1 (removed: it never runs), 2 (taken: asked to stop), 3 (taken, and asked
-- before), 0 (unknown, expired or finished).
local s = redis.call('HGET', KEYS[1], 's')
if not s or s == 'ok' or s == 'fail' or s == 'x' then
  return 0
end
if (s == 'q' or s == 'd') and redis.call('SISMEMBER', KEYS[8], ARGV[1]) == 0 then
  local gone = false
  if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then
    redis.call('HDEL', KEYS[3], ARGV[1])
    gone = true
  else
    local entry = redis.call('HGET', KEYS[1], 'e')
    if not entry then
      -- A record written by someone else than a put (the django.tasks backend): its
      -- message cannot be found from here.
      return 0
    end
    -- From the tail, where the oldest entries are (the next to be taken).
    gone = entry ~= '' and (redis.call('LREM', KEYS[6], -1, entry) == 1
      or redis.call('ZREM', KEYS[7], entry) == 1)
  end
  if gone then
    redis.call('HSET', KEYS[1], 's', 'x', 'v', '')
    redis.call('HDEL', KEYS[1], 'e')
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
    redis.call('HINCRBY', KEYS[5], 'cancelled', 1)
    redis.call('PUBLISH', ARGV[3], ARGV[1])
    return 1
  end
  -- Not in the queue any more: a worker took it (complete.lua names it running soon).
  redis.call('HSET', KEYS[1], 's', 'r', 'e', '')
end
if redis.call('SADD', KEYS[4], ARGV[1]) == 1 then
  return 2
end
return 3
