#!lua flags=allow-oom
-- purge: delete a queue's ready messages, and with ARGV[1] == '1' its delayed ones too.
-- Messages in flight and dead letters stay (the consumers holding them ack as usual).
--
-- KEYS[1] ready         list
-- KEYS[2] delayed       zset  message id -> due time
-- KEYS[3] delayed_data  hash  message id -> entry
-- KEYS[4] stats         hash  counters ("purged" counts what this deleted)
-- ARGV[1] '1': also the delayed messages
--
-- Returns {ready deleted, delayed deleted}.
local ready = redis.call('LLEN', KEYS[1])
local delayed = 0
redis.call('UNLINK', KEYS[1])
if ARGV[1] == '1' then
  delayed = redis.call('ZCARD', KEYS[2])
  redis.call('UNLINK', KEYS[2], KEYS[3])
end
if ready + delayed > 0 then
  redis.call('HINCRBY', KEYS[4], 'purged', ready + delayed)
end
return {ready, delayed}
