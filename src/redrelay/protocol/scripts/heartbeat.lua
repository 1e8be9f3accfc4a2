#!lua flags=allow-oom
-- heartbeat: extend a consumer's lease, or register it when ARGV[3] is a non-empty info.
--
-- KEYS[1] leases     zset  consumer id -> lease expiry (server ms)
-- KEYS[2] consumers  hash  consumer id -> info (JSON)
-- ARGV[1] consumer id; ARGV[2] lease ms; ARGV[3] info to register with, or '' to renew
--
-- Returns 1, or 0 if a renewal found no lease: it was taken over, and the consumer must
-- register again under a new id (its old deliveries are already back in ready).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[3] == '' then
  if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
    return 0
  end
else
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
