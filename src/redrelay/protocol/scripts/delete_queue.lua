#!lua flags=allow-oom
-- delete_queue: delete every key of one queue (or shard): its ready, delayed, in-flight
-- and dead messages, leases, consumers, counters, history and shard count. Deduplication keys
-- are left to expire (dedup_ttl). The caller removes the name from the namespace's set
-- of queues (another hash tag).
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
-- KEYS[11...] pairs: in-flight hash, started hash of each consumer in ARGV
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
local n = redis.call('LLEN', KEYS[2]) + redis.call('ZCARD', KEYS[3])
  + redis.call('ZCARD', KEYS[6])
for i = 11, #KEYS, 2 do
  n = n + redis.call('HLEN', KEYS[i])
end
redis.call('UNLINK', unpack(KEYS))
return {1, n}
