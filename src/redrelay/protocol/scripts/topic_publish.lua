-- topic_publish: append entries to a topic's stream, trimming it to its retention bound.
--
-- KEYS[1] stream
-- ARGV[1] retention: '' (none), 'MAXLEN' (ARGV[2] = entries) or 'MINID' (ARGV[2] = age ms,
--         measured on the server's clock); ARGV[3...] entries (each the field 'e')
--
-- Trimming is approximate ('~': whole radix-tree nodes), so a stream may hold a little
-- more than the bound. Returns the new stream ids, in order.
local trim = {}
if ARGV[1] == 'MAXLEN' then
  trim = {'MAXLEN', '~', ARGV[2]}
elseif ARGV[1] == 'MINID' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  trim = {'MINID', '~', math.max(0, now - tonumber(ARGV[2]))}
end
local ids = {}
for i = 3, #ARGV do
  local args = {KEYS[1]}
  for j = 1, #trim do
    args[#args + 1] = trim[j]
  end
  args[#args + 1] = '*'
  args[#args + 1] = 'e'
  args[#args + 1] = ARGV[i]
  ids[#ids + 1] = redis.call('XADD', unpack(args))
end
return ids
