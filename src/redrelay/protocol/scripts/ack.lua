#!lua flags=allow-oom
-- ack: forget delivered entries. O(number of tags).
--
-- KEYS[1] inflight  hash of the consumer that received the entries
-- KEYS[2] stats     hash of counters
-- KEYS[3] started   hash of the consumer's marked tags (see mark.lua)
-- ARGV    delivery tags
--
-- Returns how many tags were still held. A tag that is gone belonged to a lease that was
-- taken over (the entry is back in ready or with another consumer): that ack is rejected
-- and counted, never applied to someone else's delivery.
local n = redis.call('HDEL', KEYS[1], unpack(ARGV))
redis.call('HDEL', KEYS[3], unpack(ARGV))
if n > 0 then
  redis.call('HINCRBY', KEYS[2], 'acked', n)
end
if n < #ARGV then
  redis.call('HINCRBY', KEYS[2], 'rejected', #ARGV - n)
end
return n
