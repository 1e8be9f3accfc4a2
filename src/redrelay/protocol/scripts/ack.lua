#!lua flags=allow-oom
-- ack: forget delivered entries. O(number of tags).
--
-- KEYS[1] inflight  hash of the consumer that received the entries
-- KEYS[2] stats     hash of counters
-- KEYS[3] started   hash of the consumer's marked tags (see mark.lua)
-- KEYS[4] history   hash of per-minute/per-hour counters (see _count.lua)
-- ARGV    delivery tags
--
-- Returns how many tags were still held. A tag that is gone belonged to a lease that was
-- taken over (the entry is back in ready or with another consumer): that ack is rejected
-- and counted, never applied to someone else's delivery.
-- @include count
local n = redis.call('HDEL', KEYS[1], unpack(ARGV))
redis.call('HDEL', KEYS[3], unpack(ARGV))
count_outcome(KEYS[2], KEYS[4], 'acked', n)
count_outcome(KEYS[2], KEYS[4], 'rejected', #ARGV - n)
return n
