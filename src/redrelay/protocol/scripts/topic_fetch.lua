#!lua flags=allow-oom
-- topic_fetch: ack the previous batch, then hand this consumer up to ARGV[3] entries:
-- first its own unacked entries when resyncing, then due retries (claimed from the
-- parking consumer), then new entries (XREADGROUP without BLOCK), in one atomic step.
--
-- KEYS[1] stream
-- KEYS[2] leases    zset    consumer id -> lease expiry (server ms)
-- KEYS[3] retry     zset    stream id -> due (server ms)
-- KEYS[4] failures  hash    stream id -> failures so far
-- KEYS[5] stats     hash    counters
-- KEYS[6] cursor    hash    id: the last stream id this group read; read: entries the
--                           stream ever had up to it (unknown after a start from an id)
-- KEYS[7] started   hash    marks of started redeliveries (cleared on ack)
-- KEYS[8] history   hash  per-minute/per-hour counters (see _count.lua)
-- ARGV[1] group; ARGV[2] consumer id; ARGV[3] max entries; ARGV[4] '1' to resync (a
-- previous fetch's reply was lost: what it took is handed out again); ARGV[5...] stream
-- ids to ack first (as topic_ack.lua: only those this consumer still holds)
--
-- Returns {acks held, status, trimmed pending, trimmed unread, wait ms, entries...}.
-- status 1: entries follow as quadruples (stream id, entry, deliveries, failures);
-- status 0: nothing to do, wait ms is when the next retry is due (-1: none);
-- status -1: the consumer holds no live lease (it must register again).
-- trimmed unread counts entries that retention removed before this group read them
-- (-1: some, but Redis < 7 cannot say how many); trimmed pending counts entries the
-- group held that were removed before they were done. Both are added to the counters.
-- @include count
local group, consumer, count = ARGV[1], ARGV[2], tonumber(ARGV[3])

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if not ms then
    return tonumber(id) or 0, 0
  end
  return tonumber(ms), tonumber(seq)
end

local function before(a, b)
  local a1, a2 = parse(a)
  local b1, b2 = parse(b)
  return a1 < b1 or (a1 == b1 and a2 < b2)
end

local function field(list, name)
  for i = 1, #list, 2 do
    if list[i] == name then
      return list[i + 1]
    end
  end
  return nil
end

local held = 0
if #ARGV > 4 then
  -- Which of them this consumer still holds: one XPENDING of the oldest entries it
  -- holds, as many as there are acks (they are its oldest, unless retries or a resync
  -- came between: a batch fetched ahead is newer), and one per id only for an ack not
  -- in that reply when the reply may have been cut short by its COUNT.
  local limit = #ARGV - 4
  local pending = redis.call('XPENDING', KEYS[1], group, '-', '+', limit, consumer)
  local mine = {}
  for i = 1, #pending do
    mine[pending[i][1]] = true
  end
  local cut = #pending >= limit
  local owned = {}
  for i = 5, #ARGV do
    if mine[ARGV[i]] or (cut and #redis.call('XPENDING', KEYS[1], group, ARGV[i], ARGV[i], 1, consumer) > 0) then
      owned[#owned + 1] = ARGV[i]
    end
  end
  held = #owned
  if held > 0 then
    redis.call('XACK', KEYS[1], group, unpack(owned))
    -- (most groups have no failures or marks: no need to pass them every id)
    if redis.call('EXISTS', KEYS[4]) == 1 then
      redis.call('HDEL', KEYS[4], unpack(owned))
    end
    if redis.call('EXISTS', KEYS[7]) == 1 then
      redis.call('HDEL', KEYS[7], unpack(owned))
    end
    count_outcome(KEYS[5], KEYS[8], 'acked', held)
  end
  count_outcome(KEYS[5], KEYS[8], 'rejected', #ARGV - 4 - held)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = redis.call('ZSCORE', KEYS[2], consumer)
if (not expiry) or tonumber(expiry) < now then
  return {held, -1, 0, 0, -1}
end

local out, n = {0, 0, 0, 0, 0}, 0
local trimmed, unread = 0, 0
local function add(id, fields, deliveries)
  local entry
  if #fields == 2 and fields[1] == 'e' then
    entry = fields[2]  -- the common case: a published entry, for every group
  else
    -- a requeued dead letter of another group: this group acks it unseen
    local only = field(fields, 'g')
    if only and only ~= group then
      redis.call('XACK', KEYS[1], group, id)
      return
    end
    entry = field(fields, 'e') or fields[2] or ''
  end
  -- (into the reply directly, after its 5 header slots; n: entries so far)
  out[6 + 4 * n], out[7 + 4 * n], out[8 + 4 * n], out[9 + 4 * n] = id, entry, deliveries, 0
  n = n + 1  -- (failures: 0 here, read for every entry at once below)
end
local function deliveries_of(id)
  local p = redis.call('XPENDING', KEYS[1], group, id, id, 1)
  return p[1] and p[1][4] or 1
end

if ARGV[4] == '1' then
  local mine = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'STREAMS', KEYS[1], '0')
  local entries = mine and mine[1] and mine[1][2] or {}
  for i = 1, #entries do
    local id, fields = entries[i][1], entries[i][2]
    if (not fields) or #fields == 0 then
      redis.call('XACK', KEYS[1], group, id)
      redis.call('HDEL', KEYS[4], id)
      trimmed = trimmed + 1
    else
      add(id, fields, deliveries_of(id))
    end
  end
end

if n < count then
  local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, count - n)
  if #due > 0 then
    redis.call('ZREM', KEYS[3], unpack(due))
    local claimed = redis.call('XCLAIM', KEYS[1], group, consumer, 0, unpack(due))
    local alive = {}
    for i = 1, #claimed do
      if claimed[i] and claimed[i][2] then
        alive[claimed[i][1]] = true
        add(claimed[i][1], claimed[i][2], deliveries_of(claimed[i][1]))
      end
    end
    for i = 1, #due do
      if not alive[due[i]] then
        redis.call('XACK', KEYS[1], group, due[i])
        redis.call('HDEL', KEYS[4], due[i])
        trimmed = trimmed + 1
      end
    end
  end
end

if n < count then
  local want = count - n
  local got = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', want, 'STREAMS', KEYS[1], '>')
  local entries = got and got[1] and got[1][2] or {}
  -- Entries trimmed before this group read them. Only worth a look when this read
  -- starts at the stream's first entry and the group's cursor (the last id it read) is
  -- older: then the stream lost more entries (entries-added - length) than the group
  -- had read up to its cursor. Idle polls read and write nothing here.
  local cur = redis.call('HMGET', KEYS[6], 'id', 'read')
  local cursor, read = cur[1], tonumber(cur[2])
  local info = nil
  local function stream_info()
    if not info then
      local flat = redis.call('XINFO', 'STREAM', KEYS[1])
      info = {}
      for i = 1, #flat, 2 do
        info[flat[i]] = flat[i + 1]
      end
    end
    return info
  end
  if #entries > 0 then
    local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
    if cursor and first[1] and first[1][1] == entries[1][1] and before(cursor, entries[1][1]) then
      local added, length = stream_info()['entries-added'], stream_info()['length']
      if added and read then
        if added - length > read then
          unread = added - length - read
          read = added - length
        end
      elseif (not added) or added > length then
        unread = -1
      end
    end
    for i = 1, #entries do
      add(entries[i][1], entries[i][2], 1)
    end
    if read then
      read = read + #entries
    end
    redis.call('HSET', KEYS[6], 'id', entries[#entries][1])
  end
  if (not read) and #entries < want then
    read = stream_info()['entries-added']  -- caught up: everything so far was seen
    if read then
      redis.call('HSET', KEYS[6], 'read', read)
    end
  elseif #entries > 0 and read then
    redis.call('HSET', KEYS[6], 'read', read)
  end
end

if trimmed > 0 then
  redis.call('HINCRBY', KEYS[5], 'trimmed_pending', trimmed)
end
if unread ~= 0 then
  redis.call('HINCRBY', KEYS[5], 'trimmed_unread', math.max(unread, 1))
end
if n == 0 then
  local nxt = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  local wait = -1
  if #nxt > 0 then
    wait = math.max(0, tonumber(nxt[2]) - now)
  end
  return {held, 0, trimmed, unread, wait}
end
out[1], out[2], out[3], out[4], out[5] = held, 1, trimmed, unread, 0
if redis.call('EXISTS', KEYS[4]) == 1 then  -- (no failures anywhere in the group: all 0)
  local ids = {}
  for j = 1, n do
    ids[j] = out[2 + 4 * j]
  end
  local failures = redis.call('HMGET', KEYS[4], unpack(ids))
  for j = 1, n do
    out[5 + 4 * j] = tonumber(failures[j] or '0')
  end
end
return out
