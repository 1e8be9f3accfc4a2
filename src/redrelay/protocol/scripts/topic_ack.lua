#!lua flags=allow-oom
-- topic_ack: acknowledge entries a consumer still holds. O(ids * log(pending)).
--
-- KEYS[1] stream
-- KEYS[2] failures  hash  stream id -> failures so far
-- KEYS[3] stats     hash  counters
-- KEYS[4] started   hash  marks of started redeliveries
-- KEYS[5] history   hash  per-minute/per-hour counters (see _count.lua)
-- ARGV[1] group; ARGV[2] consumer id; ARGV[3...] stream ids
--
-- Returns how many were still held. The lease token is the owner in the stream's
-- pending list: an entry that a dead consumer's recovery took back (or that another
-- consumer holds now) is not this consumer's, so its ack is rejected and counted.
-- @include count
local owned = {}
for i = 3, #ARGV do
  if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2]) > 0 then
    owned[#owned + 1] = ARGV[i]
  end
end
if #owned > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(owned))
  redis.call('HDEL', KEYS[2], unpack(owned))
  redis.call('HDEL', KEYS[4], unpack(owned))
  count_outcome(KEYS[3], KEYS[5], 'acked', #owned)
end
count_outcome(KEYS[3], KEYS[5], 'rejected', #ARGV - 2 - #owned)
return #owned
