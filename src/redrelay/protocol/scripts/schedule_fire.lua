-- schedule_fire: claim a schedule's due tick(s) and enqueue their messages, atomically.
--
-- KEYS[1] state  hash  d digest, n next tick, p paused, l last tick, i last message id,
--                      g lag of the last enqueue (ms), a time of it, x missed, f fired,
--                      ps ticks passed while paused
-- KEYS[2] ready  list  of the target queue (shard), under the same hash tag
-- ARGV[1] digest the caller fired for; ARGV[2] the next tick it read (compare-and-set)
-- ARGV[3] the new next tick; ARGV[4] ticks counted missed; ARGV[5] ticks due in all
-- ARGV[6] the last tick enqueued; ARGV[7] its message id
-- ARGV[8...] entries, oldest tick first
--
-- The claim (moving n) and the enqueue are one script on one hash tag, so however many
-- workers race, each tick is enqueued once: a loser finds n moved and writes nothing. A
-- paused schedule moves n without enqueueing (the ticks are counted in ps). No allow-oom:
-- like a put, a full Redis refuses the message, and the tick stays due (then misfire rules).
--
-- Returns {1, server ms} when enqueued, {2, server ms} when paused, {0, n} when lost.
local s = redis.call('HMGET', KEYS[1], 'd', 'n', 'p')
if s[1] ~= ARGV[1] or s[2] ~= ARGV[2] then
  return {0, s[2] or false}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if s[3] == '1' then
  redis.call('HSET', KEYS[1], 'n', ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'ps', tonumber(ARGV[5]))
  return {2, now}
end
if #ARGV >= 8 then
  redis.call('LPUSH', KEYS[2], unpack(ARGV, 8))
  redis.call('HSET', KEYS[1], 'n', ARGV[3], 'l', ARGV[6], 'i', ARGV[7], 'a', now,
    'g', now - tonumber(ARGV[6]))
  redis.call('HINCRBY', KEYS[1], 'f', #ARGV - 7)
else
  redis.call('HSET', KEYS[1], 'n', ARGV[3])
end
if tonumber(ARGV[4]) > 0 then
  redis.call('HINCRBY', KEYS[1], 'x', tonumber(ARGV[4]))
end
return {1, now}
