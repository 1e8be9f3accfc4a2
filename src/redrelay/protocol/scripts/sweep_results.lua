#!lua flags=allow-oom
-- sweep_results: drop result buckets whose results have expired, with UNLINK (freed in the
-- background: a bucket may hold millions of results, and Redis frees an expiring key in
-- one go, blocking every client meanwhile).
--
-- KEYS[1]    results  zset  result bucket key -> expiry of its results (server ms)
-- KEYS[2...] bucket   hash  buckets the caller saw due (by its clock); checked again here
--
-- A bucket's own TTL is set later than its results' expiry (complete.lua), so that
-- workers, which call this once a heartbeat, free it first; it is a safety net for a
-- queue whose workers are gone. Returns how many buckets were dropped.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = {}
for i = 2, #KEYS do
  local expiry = redis.call('ZSCORE', KEYS[1], KEYS[i])
  if not expiry or tonumber(expiry) <= now then
    gone[#gone + 1] = KEYS[i]
  end
end
if #gone > 0 then
  redis.call('UNLINK', unpack(gone))
  redis.call('ZREM', KEYS[1], unpack(gone))
end
return #gone
