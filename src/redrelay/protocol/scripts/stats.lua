#!lua flags=no-writes
-- stats: one consistent snapshot of a queue. A read-only script rather than MULTI/EXEC,
-- because a full Redis refuses every command queued in a MULTI, reads included, and
-- stats (and relay.drain(), which polls them) must work while workers drain a full Redis.
--
-- KEYS[1] leases      zset  consumer id -> lease expiry
-- KEYS[2] ready       list
-- KEYS[3] delayed     zset
-- KEYS[4] dead        zset
-- KEYS[5] stats       hash  counters
-- KEYS[6] prio        zset  ready entries of priority != 0
-- KEYS[7] parked      zset  entries parked by their limit key
-- KEYS[8] parked_due  zset  parked keys -> due
-- KEYS[9] limits      hash  the limits' spec ('spec') and token buckets
-- KEYS[10...] the in-flight hashes of the consumers the caller saw in KEYS[1]
--
-- Returns {consumer ids, ready (list), delayed, dead, oldest ready entry or false,
-- counters as a flat list, in-flight count per KEYS[10...], each consumer's lease expiry
-- (server ms, in the order of the ids), server time (ms), prioritized, parked, parked
-- keys (up to 10, soonest due first), number of parked keys, limits spec or false}. The
-- caller compares the ids with the ones it named and asks again if a consumer came or
-- went; a lease whose expiry has passed belongs to a consumer that is gone or stuck (its
-- deliveries return at the next sweep).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiries = {}
local scored = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 2, #scored, 2 do
  expiries[#expiries + 1] = scored[i]
end
-- A wake-up bell (see _route.lua) at the old end of ready is not a message.
local bell = redis.call('LINDEX', KEYS[2], -1) == '\031rr1:bell' and 1 or 0
local inflight = {}
for i = 10, #KEYS do
  inflight[#inflight + 1] = redis.call('HLEN', KEYS[i])
end
return {
  redis.call('ZRANGE', KEYS[1], 0, -1),
  redis.call('LLEN', KEYS[2]) - bell,
  redis.call('ZCARD', KEYS[3]),
  redis.call('ZCARD', KEYS[4]),
  redis.call('LINDEX', KEYS[2], -1 - bell),
  redis.call('HGETALL', KEYS[5]),
  inflight,
  expiries,
  now,
  redis.call('ZCARD', KEYS[6]),
  redis.call('ZCARD', KEYS[7]),
  redis.call('ZRANGE', KEYS[8], 0, 9),
  redis.call('ZCARD', KEYS[8]),
  redis.call('HGET', KEYS[9], 'spec'),
}
