#!lua flags=allow-oom
-- mark: record that a redelivered entry is about to run, so that if this consumer dies now
-- the entry's delivery is counted. First deliveries are not marked (that would cost a
-- round trip per message); recovery counts them all, see recover.lua.
--
-- KEYS[1] inflight  hash  the consumer's deliveries
-- KEYS[2] started   hash  the consumer's marked tags
-- ARGV[1] delivery tag
--
-- Returns 1, or 0 if the tag is no longer held (lease lost: do not run it).
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], 1)
return 1
