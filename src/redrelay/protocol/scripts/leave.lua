#!lua flags=allow-oom
-- leave: a consumer that stops cleanly, with nothing running, gives back what it still holds
-- (unchanged, to the front of ready) and drops its lease.
--
-- KEYS[1] leases     zset
-- KEYS[2] inflight   hash  this consumer's deliveries
-- KEYS[3] ready      list
-- KEYS[4] consumers  hash
-- KEYS[5] started    hash  this consumer's marked tags
-- ARGV[1] consumer id
--
-- Returns the number of entries given back.
local vals = redis.call('HVALS', KEYS[2])
for i = 1, #vals do
  redis.call('RPUSH', KEYS[3], vals[i])
end
redis.call('DEL', KEYS[2], KEYS[5])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return #vals
