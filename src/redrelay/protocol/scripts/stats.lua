#!lua flags=no-writes
-- stats: one consistent snapshot of a queue. A read-only script rather than MULTI/EXEC,
-- because a full Redis refuses every command queued in a MULTI, reads included, and
-- stats (and relay.drain(), which polls them) must work while workers drain a full Redis.
--
-- KEYS[1] leases   zset  consumer id -> lease expiry
-- KEYS[2] ready    list
-- KEYS[3] delayed  zset
-- KEYS[4] dead     zset
-- KEYS[5] stats    hash  counters
-- KEYS[6...] the in-flight hashes of the consumers the caller saw in KEYS[1]
--
-- Returns {consumer ids, ready, delayed, dead, oldest ready entry or false, counters as a
-- flat list, in-flight count per KEYS[6...], each consumer's lease expiry (server ms, in
-- the order of the ids), server time (ms)}. The caller compares the ids with the ones it
-- named and asks again if a consumer came or went; a lease whose expiry has passed
-- belongs to a consumer that is gone or stuck (its deliveries return at the next sweep).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiries = {}
local scored = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 2, #scored, 2 do
  expiries[#expiries + 1] = scored[i]
end
local inflight = {}
for i = 6, #KEYS do
  inflight[#inflight + 1] = redis.call('HLEN', KEYS[i])
end
return {
  redis.call('ZRANGE', KEYS[1], 0, -1),
  redis.call('LLEN', KEYS[2]),
  redis.call('ZCARD', KEYS[3]),
  redis.call('ZCARD', KEYS[4]),
  redis.call('LINDEX', KEYS[2], -1),
  redis.call('HGETALL', KEYS[5]),
  inflight,
  expiries,
  now,
}
