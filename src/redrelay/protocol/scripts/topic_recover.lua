#!lua flags=allow-oom
-- topic_recover: if a consumer's lease has expired (or ARGV[4] is '1': it leaves cleanly),
-- hand everything it holds back to its group, due at once, and forget the consumer.
--
-- KEYS[1] stream
-- KEYS[2] leases     zset  consumer id -> lease expiry (server ms)
-- KEYS[3] consumers  hash  consumer id -> info
-- KEYS[4] retry      zset  stream id -> due (server ms)
-- KEYS[5] stats      hash
-- KEYS[6] started    hash  stream id -> 1: redeliveries whose handler started
-- KEYS[7] history   hash  per-minute/per-hour counters (see _count.lua)
-- ARGV[1] group; ARGV[2] consumer id; ARGV[3] the parking consumer's name;
-- ARGV[4] '1' to leave (no expiry check, not counted as recovered)
--
-- The entries move to the parking consumer with XCLAIM ... JUSTID; a fetch that claims
-- them again bumps their delivery count. Counting, as for queues: a first delivery is
-- counted (we cannot tell whether it ran); a redelivered entry only if its handler
-- started (topic_mark.lua), else its count is set back (RETRYCOUNT), so the unstarted
-- entries fetched next to a poison one are not counted once per crash. A consumer that
-- leaves cleanly has no handler running, so none of its hand-outs is counted. Entries trimmed from the stream meanwhile are
-- dropped from the pending list by XCLAIM and counted as trimmed_pending.
-- Returns {recovered, trimmed}, or {-1, 0} if the lease is alive (it heartbeat in time).
-- @include count
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[4] ~= '1' then
  local expiry = redis.call('ZSCORE', KEYS[2], ARGV[2])
  if expiry and tonumber(expiry) >= now then
    return {-1, 0}
  end
end
local n, trimmed = 0, 0
while true do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 500, ARGV[2])
  if #pending == 0 then
    break
  end
  local ids, claimed = {}, {}
  for i = 1, #pending do
    local id, count = pending[i][1], tonumber(pending[i][4])
    -- leaving cleanly, nothing it holds has started: no hand-out is counted
    local unstarted = ARGV[4] == '1' or redis.call('HEXISTS', KEYS[6], id) == 0
    if count >= 1 and unstarted and (count >= 2 or ARGV[4] == '1') then
      local one = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, id, 'RETRYCOUNT', count - 1, 'JUSTID')
      if #one > 0 then
        claimed[#claimed + 1] = one[1]
      end
    else
      ids[#ids + 1] = id
    end
  end
  if #ids > 0 then
    -- (unpack() must come last in an argument list: anywhere else Lua keeps one value)
    ids[#ids + 1] = 'JUSTID'
    local rest = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, unpack(ids))
    for i = 1, #rest do
      claimed[#claimed + 1] = rest[i]
    end
  end
  for i = 1, #pending do
    redis.call('HDEL', KEYS[6], pending[i][1])
  end
  for i = 1, #claimed do
    redis.call('ZADD', KEYS[4], now, claimed[i])
  end
  n = n + #claimed
  trimmed = trimmed + #pending - #claimed
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
if ARGV[4] ~= '1' then
  count_outcome(KEYS[5], KEYS[7], 'recovered', n)
end
if trimmed > 0 then
  redis.call('HINCRBY', KEYS[5], 'trimmed_pending', trimmed)
end
return {n, trimmed}
