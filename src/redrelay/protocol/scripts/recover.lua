#!lua flags=allow-oom
-- recover: if a consumer's lease has expired, move everything it held back to the front of
-- ready, and forget the consumer. Whichever worker runs it first wins.
--
-- Counting: a first delivery (deliveries 0) is counted (1), since we cannot tell whether it
-- ran; a redelivered entry is counted again only if it was marked as started (mark.lua).
-- So a message that kills its consumer reaches max_deliveries, while the unstarted messages
-- fetched in the same batch are counted once, not once per crash.
--
-- KEYS[1] leases     zset  consumer id -> lease expiry (server ms)
-- KEYS[2] inflight   hash  the expired consumer's deliveries: tag -> entry
-- KEYS[3] ready      list
-- KEYS[4] consumers  hash  consumer id -> info
-- KEYS[5] stats      hash
-- KEYS[6] started    hash  the expired consumer's marked tags
-- KEYS[7] history    hash  per-minute/per-hour counters (see _count.lua)
-- ARGV[1] consumer id
--
-- Returns the number of entries recovered, or -1 if the lease is alive (it heartbeat in time).
-- @include count
local magic = '\031rr1:'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if expiry and tonumber(expiry) >= now then
  return -1
end
local all = redis.call('HGETALL', KEYS[2])
local started = {}
local marked = redis.call('HKEYS', KEYS[6])
for i = 1, #marked do
  started[marked[i]] = true
end
local n = 0
for i = 1, #all, 2 do
  local tag, v = all[i], all[i + 1]
  local entry
  if string.sub(v, 1, 5) == magic then
    local c = string.find(v, ':', 6, true)
    local d = c and tonumber(string.sub(v, 6, c - 1))
    if not d then
      entry = v  -- a malformed header: the worker that fetches it dead-letters it
    else
      if d == 0 or started[tag] then
        d = d + 1
      end
      entry = magic .. d .. string.sub(v, c)
    end
  else
    -- a raw body (LPUSHed by another program): wrap it, using its first tag as its id
    entry = magic .. '1:0:r' .. tag .. '|' .. v
  end
  redis.call('RPUSH', KEYS[3], entry)
  n = n + 1
end
redis.call('DEL', KEYS[2], KEYS[6])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
count_outcome(KEYS[5], KEYS[7], 'recovered', n)
return n
