#!lua flags=allow-oom
-- purge_dead: delete dead letters by id.
--
-- KEYS[1] dead       zset
-- KEYS[2] dead_data  hash
-- ARGV    message ids
--
-- Returns how many were deleted.
redis.call('ZREM', KEYS[1], unpack(ARGV))
return redis.call('HDEL', KEYS[2], unpack(ARGV))
