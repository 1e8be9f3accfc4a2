-- topic_create: create a consumer group at its start position (MKSTREAM), once.
--
-- KEYS[1] stream   the topic's stream
-- KEYS[2] cursor   string  the last stream id the group read (see topic_fetch.lua)
-- ARGV[1] group; ARGV[2] start id ('$' for now, '0' for the beginning, or a stream id)
--
-- Returns 1 if the group was created, 0 if it existed (its position is left alone: a
-- group's start only matters the first time).
local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], ARGV[1], ARGV[2], 'MKSTREAM')
if not ok then
  if string.find(tostring(err), 'BUSYGROUP', 1, true) then
    return 0
  end
  return redis.error_reply(tostring(err))
end
local cursor = ARGV[2]
if cursor == '$' then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      cursor = info[i + 1]
    end
  end
end
redis.call('SET', KEYS[2], cursor)
return 1
