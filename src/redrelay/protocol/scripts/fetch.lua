#!lua flags=allow-oom
-- fetch: ack the previous batch, promote due delayed messages, then move up to ARGV[2]
-- entries from ready into this consumer's in-flight hash, in one atomic step (acks ride
-- along so that a batch costs one round trip, not two).
--
-- KEYS[1] ready         list    (consumers take from the right: FIFO)
-- KEYS[2] leases        zset    consumer id -> lease expiry (server ms)
-- KEYS[3] inflight      hash    delivery tag -> entry, for this consumer
-- KEYS[4] delayed       zset    message id -> due (server ms)
-- KEYS[5] delayed_data  hash    message id -> entry
-- KEYS[6] stats         hash    counters
-- KEYS[7] started       hash    this consumer's marked tags (see mark.lua)
-- KEYS[8] history       hash    per-minute/per-hour counters (see _count.lua)
-- ARGV[1] consumer id; ARGV[2] max entries; ARGV[3] sequence number of the first tag;
-- ARGV[4] max delayed entries to promote; ARGV[5...] delivery tags to ack first
--
-- Returns {acks held, status, ...}. "acks held" counts the ARGV[5...] tags this consumer
-- still held (the others were taken over: rejected and counted, as in ack.lua). Status 1:
-- the entries follow (delivery tags are "<consumer>:<ARGV[3] + i - 1>"); status 0: ready
-- is empty, and the third element is the ms until the next delayed message is due (-1:
-- none); status -1: the consumer holds no live lease (it must register again).
-- Retried with the same ARGV after a lost reply, it returns the entries the first call
-- moved (found under their tags) and does nothing else.
-- A retried fetch whose first reply was lost: it already ran (acks applied, entries
-- moved), so hand back what it took rather than taking more.
-- @include count
local first = tonumber(ARGV[3])
if redis.call('HEXISTS', KEYS[3], ARGV[1] .. ':' .. first) == 1 then
  local tags = {}
  for i = 1, tonumber(ARGV[2]) do
    tags[i] = ARGV[1] .. ':' .. (first + i - 1)
  end
  local values = redis.call('HMGET', KEYS[3], unpack(tags))
  local again = {#ARGV - 4, 1}
  for i = 1, #values do
    if not values[i] then
      break
    end
    again[#again + 1] = values[i]
  end
  return again
end
local held = 0
if #ARGV > 4 then
  local tags = {unpack(ARGV, 5)}
  held = redis.call('HDEL', KEYS[3], unpack(tags))
  redis.call('HDEL', KEYS[7], unpack(tags))
  count_outcome(KEYS[6], KEYS[8], 'acked', held)
  count_outcome(KEYS[6], KEYS[8], 'rejected', #tags - held)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = redis.call('ZSCORE', KEYS[2], ARGV[1])
if (not expiry) or tonumber(expiry) < now then
  return {held, -1}
end
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
if #due > 0 then
  local values = redis.call('HMGET', KEYS[5], unpack(due))
  redis.call('ZREM', KEYS[4], unpack(due))
  redis.call('HDEL', KEYS[5], unpack(due))
  for i = 1, #values do
    if values[i] then
      redis.call('LPUSH', KEYS[1], values[i])
    end
  end
end
local items = redis.call('RPOP', KEYS[1], tonumber(ARGV[2]))
if not items then
  local nxt = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
  if #nxt == 0 then
    return {held, 0, -1}
  end
  return {held, 0, math.max(0, tonumber(nxt[2]) - now)}
end
local args = {}
for i = 1, #items do
  args[#args + 1] = ARGV[1] .. ':' .. (first + i - 1)
  args[#args + 1] = items[i]
end
redis.call('HSET', KEYS[3], unpack(args))
table.insert(items, 1, 1)
table.insert(items, 1, held)
return items
