#!lua flags=allow-oom
-- requeue_dead: move dead letters back to ready (the back of the queue), each exactly once.
--
-- KEYS[1] dead       zset
-- KEYS[2] dead_data  hash
-- KEYS[3] ready      list
-- ARGV    pairs: message id, entry to enqueue (counters reset by the client)
--
-- Returns how many were requeued; an id that is no longer dead is skipped.
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HDEL', KEYS[2], ARGV[i]) == 1 then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('LPUSH', KEYS[3], ARGV[i + 1])
    n = n + 1
  end
end
return n
