#!lua flags=allow-oom
-- complete: ack deliveries of a consumer that stores results, writing each message's
-- outcome in the same step: never a result without its ack, nor an ack without its result.
-- The same call also marks the next batch's tracked messages running.
--
-- KEYS[1]   inflight  hash  the consumer's deliveries
-- KEYS[2]   stats     hash  counters
-- KEYS[3]   started   hash  the consumer's marked tags (see mark.lua)
-- KEYS[4]   cancels   set   ids of running messages asked to stop (cancel.lua)
-- KEYS[5]   history   hash  per-minute/per-hour counters (see _count.lua)
-- KEYS[6]   running   set   ids of taken tracked messages
-- KEYS[7]   results   zset  result bucket key -> expiry of its results (server ms)
-- KEYS[8]   bucket    hash  this call's result bucket: id -> state byte + value
-- KEYS[8+j] job       hash  the record of the j-th tracked delivery's message, deleted when
--                           it finishes (a tracked message's record while it is pending)
-- ARGV[1] result TTL ms; ARGV[2] done channel (pub/sub, not a key); ARGV[3] n, the
-- deliveries to complete; ARGV[4] t, how many of them are of tracked messages (they come
-- first: a message put with a record, see envelope.TRACKED); ARGV[5] k, how many outcomes
-- follow (1: the same for all n, as for handlers that return None); ARGV[6 .. 5 + n] their
-- tags; then their n message ids; then the k outcomes (a state byte, 'o' ok, 'f' failed or
-- 'x' cancelled, then the encoded value); then the ids of the tracked messages to start
--
-- Returns how many tags were still held (a stale tag, whose lease was taken over, writes
-- nothing and is counted as rejected, as in ack.lua). The outcomes of one call go to one
-- bucket hash in one HSET, whose results expire result TTL ms after its last write (one
-- ZADD and one PEXPIREAT per call, not one key and one expiry per message). Only tracked
-- messages have a record to delete, a running mark to remove, a cancel to forget and a
-- waiter to wake (one PUBLISH of their ids, space-separated, for every waiter of this
-- hash tag): the others cost their outcome's field and nothing more.
-- @include count
local ttl = tonumber(ARGV[1])
local n = tonumber(ARGV[3])
local t = tonumber(ARGV[4])
local k = tonumber(ARGV[5])
local at_id, at_outcome = 5 + n, 5 + 2 * n  -- ARGV[at_id + i]: the i-th id
local held, ids = 0, {}
if n > 0 then
  -- Which tags are still held, then forget them all: three commands, not one per tag
  -- (two while no redelivered entry is marked started, the usual case).
  local present = redis.call('HMGET', KEYS[1], unpack(ARGV, 6, 5 + n))
  redis.call('HDEL', KEYS[1], unpack(ARGV, 6, 5 + n))
  if redis.call('EXISTS', KEYS[3]) == 1 then
    redis.call('HDEL', KEYS[3], unpack(ARGV, 6, 5 + n))
  end
  local fields, f, same = {}, 0, ARGV[at_outcome + 1]
  for i = 1, n do
    if present[i] then
      held = held + 1
      fields[f + 1] = ARGV[at_id + i]
      fields[f + 2] = k == 1 and same or ARGV[at_outcome + i]
      f = f + 2
    end
  end
  local jobs, c = {}, 0
  for i = 1, t do
    if present[i] then
      c = c + 1
      jobs[c] = KEYS[8 + i]
      ids[c] = ARGV[at_id + i]
    end
  end
  if held > 0 then
    redis.call('HSET', KEYS[8], unpack(fields))
    if c > 0 then
      redis.call('DEL', unpack(jobs))
    end
    local now = redis.call('TIME')
    local expiry = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + ttl
    -- The results expire at 'expiry' (the index says so, and workers UNLINK the bucket
    -- then, see sweep_results.lua); the key's own TTL is a safety net, one TTL later.
    redis.call('ZADD', KEYS[7], expiry, KEYS[8])
    redis.call('PEXPIREAT', KEYS[8], expiry + ttl)
  end
  if #ids > 0 then
    redis.call('SREM', KEYS[6], unpack(ids))
    if redis.call('SCARD', KEYS[4]) > 0 then
      redis.call('SREM', KEYS[4], unpack(ids))
    end
  end
end
count_outcome(KEYS[2], KEYS[5], 'acked', held)
count_outcome(KEYS[2], KEYS[5], 'rejected', n - held)
if #ids > 0 then
  redis.call('PUBLISH', ARGV[2], table.concat(ids, ' '))
end
if #ARGV > at_outcome + k then
  redis.call('SADD', KEYS[6], unpack(ARGV, at_outcome + k + 1))
end
return held
