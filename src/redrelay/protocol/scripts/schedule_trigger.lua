-- schedule_trigger: enqueue a schedule's message now, outside its ticks (the next tick is
-- not consumed).
--
-- KEYS[1] state  hash  t triggers requested (by `redrelay schedules trigger`), tf fired
-- KEYS[2] ready  list  of the target queue (shard)
-- ARGV[1] requests served by this call (0: a direct trigger, no request to consume)
-- ARGV[2] the id of the last entry; ARGV[3...] entries
--
-- A served request is taken with a compare-and-decrement, so of several workers that saw
-- it only one enqueues. Returns the number of entries pushed (0: someone else served it).
local want = tonumber(ARGV[1])
if want > 0 then
  local have = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
  if have < want then
    return 0
  end
  redis.call('HINCRBY', KEYS[1], 't', -want)
end
redis.call('LPUSH', KEYS[2], unpack(ARGV, 3))
redis.call('HINCRBY', KEYS[1], 'tf', #ARGV - 2)
redis.call('HSET', KEYS[1], 'ti', ARGV[2])
return #ARGV - 2
