#!lua flags=allow-oom
-- complete: ack deliveries of a consumer that stores results, writing each message's
-- outcome in the same step: never a result without its ack, nor an ack without its result.
-- The same call also marks the next batch's tracked messages running (and drops the copy
-- of the entry kept for cancel.lua).
--
-- KEYS[1]   inflight  hash  the consumer's deliveries
-- KEYS[2]   stats     hash  counters
-- KEYS[3]   started   hash  the consumer's marked tags (see mark.lua)
-- KEYS[4]   cancels   set   ids of running messages asked to stop (cancel.lua)
-- KEYS[5]   history   hash  per-minute/per-hour counters (see _count.lua)
-- KEYS[5+i] job       hash  the record of the i-th delivery's message (state s, value v),
--                           then the records of the messages to start
-- ARGV[1] result TTL ms; ARGV[2] done channel (pub/sub, not a key); ARGV[3] n, the
-- deliveries to complete; ARGV[4 + 4(i-1) ...] per delivery: tag, message id, state
-- ('ok', 'fail' or 'x'), value (the encoded return value, or '' for a cancelled one);
-- then the ids of the messages to start, one per remaining job key
--
-- Returns how many tags were still held (a stale tag, whose lease was taken over, writes
-- nothing and is counted as rejected, as in ack.lua). A message with no record (put by a
-- producer that does not track it) gets one when it finishes. One PUBLISH of the finished ids
-- (space-separated) wakes every waiter of this hash tag.
-- @include count
local ttl = tonumber(ARGV[1])
local n = tonumber(ARGV[3])
local cancels = redis.call('SCARD', KEYS[4]) > 0
local held, ids, tags = 0, {}, {}
for i = 1, n do
  tags[i] = ARGV[4 + 4 * (i - 1)]
end
if n > 0 then
  -- Which tags are still held, then forget them all: two commands, not one per tag.
  local present = redis.call('HMGET', KEYS[1], unpack(tags))
  redis.call('HDEL', KEYS[1], unpack(tags))
  redis.call('HDEL', KEYS[3], unpack(tags))
  for i = 1, n do
    if present[i] then
      local a = 4 + 4 * (i - 1)
      held = held + 1
      redis.call('HSET', KEYS[5 + i], 's', ARGV[a + 2], 'v', ARGV[a + 3])
      redis.call('PEXPIRE', KEYS[5 + i], ttl)
      if cancels then
        redis.call('SREM', KEYS[4], ARGV[a + 1])
      end
      ids[#ids + 1] = ARGV[a + 1]
    end
  end
end
count_outcome(KEYS[2], KEYS[5], 'acked', held)
count_outcome(KEYS[2], KEYS[5], 'rejected', n - held)
if held > 0 then
  redis.call('PUBLISH', ARGV[2], table.concat(ids, ' '))
end
for i = n + 1, #KEYS - 5 do
  -- Only a queued or delayed record: a finished one stays finished (a requeued dead
  -- letter says 'fail' until it finishes again). 'e' is emptied rather than deleted:
  -- one command, not two.
  local s = redis.call('HGET', KEYS[5 + i], 's')
  if s == 'q' or s == 'd' then
    redis.call('HSET', KEYS[5 + i], 's', 'r', 'e', '')
  end
end
return held
