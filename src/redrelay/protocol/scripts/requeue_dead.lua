#!lua flags=allow-oom
-- requeue_dead: move dead letters back to ready (the back of the queue), each exactly once.
--
-- KEYS[1] dead       zset
-- KEYS[2] dead_data  hash
-- KEYS[3] ready      list
-- KEYS[4] prio       zset  entries of priority != 0 (see _route.lua)
-- KEYS[5] prio_seq   hash
-- ARGV    pairs: message id, entry to enqueue (counters reset by the client)
--
-- Returns how many were requeued; an id that is no longer dead is skipped.
-- @include route
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HDEL', KEYS[2], ARGV[i]) == 1 then
    redis.call('ZREM', KEYS[1], ARGV[i])
    route(KEYS[3], KEYS[4], KEYS[5], ARGV[i + 1], false)
    n = n + 1
  end
end
return n
