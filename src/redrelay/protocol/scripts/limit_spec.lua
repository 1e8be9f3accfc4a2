#!lua flags=allow-oom
-- limit_spec: record the flow limits a consumer runs a queue with, or refuse them when
-- live consumers run it with others (workers that disagree would each enforce their own).
--
-- KEYS[1] limits  hash  'spec' -> the limits' description ('' : none)
-- KEYS[2] leases  zset  consumer id -> lease expiry (server ms)
-- ARGV[1] the spec; ARGV[2] this process's consumer ids, to leave out of the check
--
-- Returns false when recorded, else the spec the live consumers use.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local current = redis.call('HGET', KEYS[1], 'spec') or ''
if current ~= ARGV[1] then
  local live = redis.call('ZRANGEBYSCORE', KEYS[2], now, '+inf')
  for i = 1, #live do
    if live[i] ~= ARGV[2] then
      return current
    end
  end
  if ARGV[1] == '' then
    redis.call('HDEL', KEYS[1], 'spec')
  else
    redis.call('HSET', KEYS[1], 'spec', ARGV[1])
  end
end
return false
