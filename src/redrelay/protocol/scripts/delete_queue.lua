#!lua flags=allow-oom
-- delete_queue: delete every key of one queue (or shard): its ready, delayed, priority,
-- parked, in-flight and dead messages, leases, consumers, counters, history, shard count,
-- limits and slots, and its results (the buckets the results index lists, the running and
-- cancel sets). Deduplication keys and the records of tracked messages are left to
-- expire (dedup_ttl, 30 days). The caller removes the name from the namespace's set of
-- queues (another hash tag).
--
-- KEYS[1] leases        zset  consumer id -> lease expiry
-- KEYS[2] ready         list
-- KEYS[3] delayed       zset
-- KEYS[4] delayed_data  hash
-- KEYS[5] consumers     hash
-- KEYS[6] dead          zset
-- KEYS[7] dead_data     hash
-- KEYS[8] stats         hash
-- KEYS[9] shards        string
-- KEYS[10] history      hash  per-minute and per-hour outcome counters
-- KEYS[11] prio         zset  entries of priority != 0
-- KEYS[12] prio_seq     hash
-- KEYS[13] limits       hash
-- KEYS[14] slots        hash
-- KEYS[15] parked       zset  entries parked by their limit key
-- KEYS[16] parked_due   zset
-- KEYS[17] cancels      set
-- KEYS[18] running      set
-- KEYS[19] results      zset  result bucket key -> expiry (its members are keys of this tag)
-- KEYS[20...] pairs: in-flight hash, started hash of each consumer in ARGV
-- ARGV        the consumer ids the caller saw in KEYS[1] (ZRANGE order)
--
-- Returns {1, messages deleted}, or {0, consumer ids} when the lease set is not the one
-- the caller saw (a consumer came or went): the caller asks again with those.
local now = redis.call('ZRANGE', KEYS[1], 0, -1)
if #now ~= #ARGV then
  return {0, now}
end
for i = 1, #now do
  if now[i] ~= ARGV[i] then
    return {0, now}
  end
end
-- A wake-up bell (see _route.lua) at the old end of ready is not a message.
local bell = redis.call('LINDEX', KEYS[2], -1) == '\031rr1:bell' and 1 or 0
local n = redis.call('LLEN', KEYS[2]) - bell + redis.call('ZCARD', KEYS[3])
  + redis.call('ZCARD', KEYS[6]) + redis.call('ZCARD', KEYS[11])
  + redis.call('ZCARD', KEYS[15])
for i = 20, #KEYS, 2 do
  n = n + redis.call('HLEN', KEYS[i])
end
local buckets = redis.call('ZRANGE', KEYS[19], 0, -1)
for i = 1, #buckets, 500 do
  redis.call('UNLINK', unpack(buckets, i, math.min(i + 499, #buckets)))
end
redis.call('UNLINK', unpack(KEYS))
return {1, n}
