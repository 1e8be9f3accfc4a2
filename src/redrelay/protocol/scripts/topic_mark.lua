#!lua flags=allow-oom
-- topic_mark: record that a redelivered entry's handler starts now (see topic_recover.lua).
--
-- KEYS[1] stream
-- KEYS[2] started  hash  stream id -> 1
-- ARGV[1] group; ARGV[2] consumer id; ARGV[3] stream id
--
-- Returns 1, or 0 if this consumer no longer holds the entry (its lease was taken over).
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2]) == 0 then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[3], 1)
return 1
