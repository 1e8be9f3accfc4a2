#!lua flags=allow-oom
-- topic_create: create a consumer group at its start position (MKSTREAM), once.
--
-- KEYS[1] stream   the topic's stream
-- KEYS[2] cursor   hash    id: the last stream id the group read; read: how many entries
--                          the stream ever had up to that id (see topic_fetch.lua)
-- ARGV[1] group; ARGV[2] start id ('$' for now, '0' for the beginning, or a stream id)
--
-- Returns 1 if the group was created, 0 if it existed (its position is left alone: a
-- group's start only matters the first time).
local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], ARGV[1], ARGV[2], 'MKSTREAM')
if not ok then
  if type(err) == 'table' then
    err = err.err  -- newer servers raise the error reply as a table
  end
  if string.find(tostring(err), 'BUSYGROUP', 1, true) then
    return 0
  end
  return redis.error_reply(tostring(err))
end
redis.call('DEL', KEYS[2])
if ARGV[2] == '$' then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  local fields = {}
  for i = 1, #info, 2 do
    fields[info[i]] = info[i + 1]
  end
  redis.call('HSET', KEYS[2], 'id', fields['last-generated-id'])
  if fields['entries-added'] then
    redis.call('HSET', KEYS[2], 'read', fields['entries-added'])
  end
elseif ARGV[2] == '0' then
  redis.call('HSET', KEYS[2], 'id', '0-0', 'read', 0)
else
  -- from an id or a time: how many entries came before is not known until caught up
  redis.call('HSET', KEYS[2], 'id', ARGV[2])
end
return 1
