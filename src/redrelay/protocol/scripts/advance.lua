#!lua flags=allow-oom
-- advance: the test drain's virtual clock. Shift every due time in a sorted set back by
-- the same amount, so that its earliest member is due now and the others keep their
-- distances. Used on a queue's delayed set and a topic group's retry set, so that
-- relay.drain() skips backoff and delays without waiting, in the order they were due.
--
-- KEYS[1] due     zset  member -> due time (server ms)
--
-- Returns the ms the clock advanced (0: nothing waiting, or already due).
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local shift = tonumber(first[2]) - now
if shift <= 0 then
  return 0
end
local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #all, 2 do
  redis.call('ZADD', KEYS[1], tonumber(all[i + 1]) - shift, all[i])
end
return shift
