#!lua flags=allow-oom
-- start: a consumer that stores results took a batch: mark each tracked message running,
-- and name the ones cancelled while queued or delayed (they must not run).
--
-- KEYS[i] job  hash  the record of the i-th message (see complete.lua)
-- ARGV[i]      the i-th message id
--
-- Returns the ids whose record says cancelled (state 'x', or a cancel asked with 'c').
-- A message with no record (put by a producer that does not track it) gets none: it is
-- written when the message finishes.
local cancelled = {}
for i = 1, #KEYS do
  local s = redis.call('HGET', KEYS[i], 's')
  if s then
    if s == 'x' or redis.call('HEXISTS', KEYS[i], 'c') == 1 then
      cancelled[#cancelled + 1] = ARGV[i]
    elseif s == 'q' or s == 'd' then
      redis.call('HSET', KEYS[i], 's', 'r')
    end
  end
end
return cancelled
