#!lua flags=allow-oom
-- release: give back deliveries that were fetched but never started (graceful stop, lost
-- lease), unchanged, to the front of ready so they keep their place.
--
-- KEYS[1] inflight  hash   the consumer's deliveries
-- KEYS[2] ready     list
-- KEYS[3] prio      zset   entries of priority != 0 (see _route.lua)
-- KEYS[4] prio_seq  hash
-- ARGV    delivery tags, oldest first
--
-- Returns how many were released (tags already gone are skipped).
-- @include route
local n = 0
for i = #ARGV, 1, -1 do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v then
    redis.call('HDEL', KEYS[1], ARGV[i])
    route(KEYS[2], KEYS[3], KEYS[4], v, true)
    n = n + 1
  end
end
return n
