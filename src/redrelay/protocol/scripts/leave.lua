#!lua flags=allow-oom
-- leave: a consumer that stops cleanly, with nothing running, gives back what it still holds
-- (unchanged, to the front of ready) and drops its lease.
--
-- KEYS[1] leases     zset
-- KEYS[2] inflight   hash  this consumer's deliveries
-- KEYS[3] ready      list
-- KEYS[4] consumers  hash
-- KEYS[5] started    hash  this consumer's marked tags
-- KEYS[6] prio       zset  entries of priority != 0 (see _route.lua)
-- KEYS[7] prio_seq   hash
-- KEYS[8] slots      hash  consumer id -> deliveries held (concurrency limits)
-- ARGV[1] consumer id
--
-- Returns the number of entries given back.
-- @include route
local vals = redis.call('HVALS', KEYS[2])
for i = 1, #vals do
  route(KEYS[3], KEYS[6], KEYS[7], vals[i], true)
end
redis.call('DEL', KEYS[2], KEYS[5])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[8], ARGV[1])
return #vals
