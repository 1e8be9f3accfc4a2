#!lua flags=allow-oom
-- complete: ack deliveries of a consumer that stores results, writing each message's
-- outcome in the same step: never a result without its ack, nor an ack without its result.
--
-- KEYS[1]   inflight  hash  the consumer's deliveries
-- KEYS[2]   stats     hash  counters
-- KEYS[3]   started   hash  the consumer's marked tags (see mark.lua)
-- KEYS[4]   cancels   set   ids of running messages asked to stop (cancel.lua)
-- KEYS[4+i] job       hash  the record of the i-th delivery's message (state s, value v)
-- ARGV[1] result TTL ms; ARGV[2] done channel (pub/sub, not a key);
-- ARGV[3 + 4(i-1) ...] per delivery: tag, message id, state ('ok', 'fail' or 'x'), value
--   (the encoded return value, the failure as JSON, or '' for a cancelled message)
--
-- Returns how many tags were still held. A stale tag (its lease was taken over) writes
-- nothing and is counted as rejected, as in ack.lua. One PUBLISH of the finished ids
-- (space-separated) wakes every waiter of this hash tag.
local ttl = tonumber(ARGV[1])
local held, ids = 0, {}
for i = 1, #KEYS - 4 do
  local a = 3 + 4 * (i - 1)
  if redis.call('HDEL', KEYS[1], ARGV[a]) == 1 then
    held = held + 1
    redis.call('HDEL', KEYS[3], ARGV[a])
    redis.call('HSET', KEYS[4 + i], 's', ARGV[a + 2], 'v', ARGV[a + 3])
    redis.call('HDEL', KEYS[4 + i], 'c')
    redis.call('PEXPIRE', KEYS[4 + i], ttl)
    redis.call('SREM', KEYS[4], ARGV[a + 1])
    ids[#ids + 1] = ARGV[a + 1]
  end
end
local n = #KEYS - 4
if held > 0 then
  redis.call('HINCRBY', KEYS[2], 'acked', held)
  redis.call('PUBLISH', ARGV[2], table.concat(ids, ' '))
end
if held < n then
  redis.call('HINCRBY', KEYS[2], 'rejected', n - held)
end
return held
