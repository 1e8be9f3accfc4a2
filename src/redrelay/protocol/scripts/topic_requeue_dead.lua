-- topic_requeue_dead: give dead letters of one group back to that group, each exactly once.
--
-- KEYS[1] stream
-- KEYS[2] dead       zset  of the group
-- KEYS[3] dead_data  hash  of the group
-- ARGV[1] group; ARGV[2] retention ('', 'MAXLEN' or 'MINID', as topic_publish.lua);
-- ARGV[3] its bound; ARGV[4...] pairs: message id, entry
--
-- The entry is appended to the stream again with the field g = group: the other groups
-- acknowledge it unseen (topic_fetch.lua), so only this group runs it again.
-- Returns how many were requeued; an id that is no longer dead is skipped.
local trim = {}
if ARGV[2] == 'MAXLEN' then
  trim = {'MAXLEN', '~', ARGV[3]}
elseif ARGV[2] == 'MINID' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  trim = {'MINID', '~', math.max(0, now - tonumber(ARGV[3]))}
end
local n = 0
for i = 4, #ARGV, 2 do
  if redis.call('HDEL', KEYS[3], ARGV[i]) == 1 then
    redis.call('ZREM', KEYS[2], ARGV[i])
    local args = {KEYS[1]}
    for j = 1, #trim do
      args[#args + 1] = trim[j]
    end
    args[#args + 1] = '*'
    args[#args + 1] = 'e'
    args[#args + 1] = ARGV[i + 1]
    args[#args + 1] = 'g'
    args[#args + 1] = ARGV[1]
    redis.call('XADD', unpack(args))
    n = n + 1
  end
end
return n
