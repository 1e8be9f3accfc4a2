#!lua flags=allow-oom
-- topic_retry: park a failed entry until its backoff is over.
--
-- KEYS[1] stream
-- KEYS[2] retry     zset  stream id -> due (server ms)
-- KEYS[3] failures  hash  stream id -> failures so far
-- KEYS[4] stats     hash
-- KEYS[5] started   hash  marks of started redeliveries
-- KEYS[6] history   hash  per-minute/per-hour counters (see _count.lua)
-- ARGV[1] group; ARGV[2] consumer id; ARGV[3] stream id; ARGV[4] delay ms;
-- ARGV[5] failures; ARGV[6] the parking consumer's name
--
-- The entry stays in the group's pending list, owned by the parking consumer (JUSTID:
-- the delivery count is not bumped), until a fetch claims it when it is due.
-- Returns 1, 2 if the entry was trimmed from the stream meanwhile (it cannot be retried:
-- counted as trimmed_pending), or 0 if this consumer no longer held it (rejected).
-- @include count
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2]) == 0 then
  count_outcome(KEYS[4], KEYS[6], 'rejected', 1)
  return 0
end
redis.call('HDEL', KEYS[5], ARGV[3])
local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[6], 0, ARGV[3], 'JUSTID')
if #claimed == 0 then
  redis.call('HDEL', KEYS[3], ARGV[3])
  redis.call('HINCRBY', KEYS[4], 'trimmed_pending', 1)
  return 2
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[3])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[5])
count_outcome(KEYS[4], KEYS[6], 'retried', 1)
return 1
