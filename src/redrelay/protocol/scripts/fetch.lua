#!lua flags=allow-oom
-- fetch: ack the previous batch, promote due delayed messages, then move up to ARGV[2]
-- entries from ready into this consumer's in-flight hash, in one atomic step (acks ride
-- along so that a batch costs one round trip, not two). Entries of priority > 0 come
-- first, then the ready list, then priorities < 0 (see _route.lua). Flow limits are
-- decided here too, with the server's clock (see docs/flow-control.md): a message they
-- hold back stays queued, untouched. Only the commands of docs/security.md's ACL list.
--
-- KEYS[1] ready         list    (consumers take from the right: FIFO)
-- KEYS[2] leases        zset    consumer id -> lease expiry (server ms)
-- KEYS[3] inflight      hash    delivery tag -> entry, for this consumer
-- KEYS[4] delayed       zset    message id -> due (server ms)
-- KEYS[5] delayed_data  hash    message id -> entry
-- KEYS[6] stats         hash    counters
-- KEYS[7] started       hash    this consumer's marked tags (see mark.lua)
-- KEYS[8] history       hash    per-minute/per-hour counters (see _count.lua)
-- KEYS[9] prio          zset    entries of priority != 0
-- KEYS[10] prio_seq      hash    order counters (prio, and 'p' for parked entries)
-- KEYS[11] limits       hash    token buckets: 'g' queue-wide, 'k:<key>' per key
-- KEYS[12] slots        hash    consumer id -> deliveries held (concurrency limit)
-- KEYS[13] parked       zset    '<key>\0<order><entry>', all scores 0
-- KEYS[14] parked_due   zset    key -> when its parked entries may go (server ms)
-- ARGV[1] consumer id; ARGV[2] max entries; ARGV[3] sequence number of the first tag;
-- ARGV[4] max delayed entries to promote; ARGV[5] queue-wide tokens per ms (0: no rate
-- limit); ARGV[6] its burst; ARGV[7] concurrency cap (0: none); ARGV[8] tokens per ms per
-- limit key (0: none); ARGV[9] its burst; ARGV[10...] delivery tags to ack first
--
-- Returns {acks held, status, ...}. "acks held" counts the ARGV[10...] tags this consumer
-- still held (the others were taken over: rejected and counted, as in ack.lua). Status 1:
-- the entries follow (delivery tags are "<consumer>:<ARGV[3] + i - 1>"); status 0:
-- nothing can be handed out, and the third element is the ms until the next delayed or
-- parked message is due (-1: none); status 2: a queue-wide limit holds entries back, the
-- third element is the ms to wait; status -1: the consumer holds no live lease.
-- Retried with the same ARGV after a lost reply, it returns the entries the first call
-- moved (found under their tags) and does nothing else.
-- @include count
-- @include route
local NARGS = 9
local first = tonumber(ARGV[3])
if redis.call('HEXISTS', KEYS[3], ARGV[1] .. ':' .. first) == 1 then
  local tags = {}
  for i = 1, tonumber(ARGV[2]) do
    tags[i] = ARGV[1] .. ':' .. (first + i - 1)
  end
  local values = redis.call('HMGET', KEYS[3], unpack(tags))
  local again = {#ARGV - NARGS, 1}
  for i = 1, #values do
    if not values[i] then
      break
    end
    again[#again + 1] = values[i]
  end
  return again
end
local held = 0
if #ARGV > NARGS then
  local tags = {unpack(ARGV, NARGS + 1)}
  held = redis.call('HDEL', KEYS[3], unpack(tags))
  redis.call('HDEL', KEYS[7], unpack(tags))
  count_outcome(KEYS[6], KEYS[8], 'acked', held)
  count_outcome(KEYS[6], KEYS[8], 'rejected', #tags - held)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = redis.call('ZSCORE', KEYS[2], ARGV[1])
if (not expiry) or tonumber(expiry) < now then
  return {held, -1}
end
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
if #due > 0 then
  local values = redis.call('HMGET', KEYS[5], unpack(due))
  redis.call('ZREM', KEYS[4], unpack(due))
  redis.call('HDEL', KEYS[5], unpack(due))
  for i = 1, #values do
    if values[i] then
      route(KEYS[1], KEYS[9], KEYS[10], values[i], false)
    end
  end
end
local has_prio = redis.call('ZCARD', KEYS[9]) > 0

-- Up to n entries, in priority order; appended to out.
local function take(n, out)
  if n <= 0 then
    return out
  end
  local want = n
  if has_prio then
    local top = redis.call('ZRANGE', KEYS[9], 0, n - 1, 'WITHSCORES')
    local taken = {}
    for i = 2, #top, 2 do
      if tonumber(top[i]) >= PRIO_ZERO then
        break
      end
      taken[#taken + 1] = top[i - 1]
      out[#out + 1] = top[i - 1]
    end
    if #taken > 0 then
      redis.call('ZREM', KEYS[9], unpack(taken))
      n = n - #taken
    end
  end
  if n > 0 then
    local items = redis.call('RPOP', KEYS[1], n)
    if items then
      for i = 1, #items do
        if items[i] ~= BELL then
          out[#out + 1] = items[i]
          n = n - 1
        end
      end
    end
  end
  if n > 0 and has_prio then
    local low = redis.call('ZRANGE', KEYS[9], 0, n - 1)
    if #low > 0 then
      redis.call('ZREM', KEYS[9], unpack(low))
      for i = 1, #low do
        out[#out + 1] = low[i]
      end
    end
  end
  return out
end

-- Token buckets, stored as '<tokens>:<ms>' and dropped once full again.
local function tokens(field, rate, burst)
  local s = redis.call('HGET', KEYS[11], field)
  if not s then
    return burst
  end
  local sep = string.find(s, ':', 1, true)
  local left, at = tonumber(string.sub(s, 1, sep - 1)), tonumber(string.sub(s, sep + 1))
  return math.min(burst, left + math.max(0, now - at) * rate)
end
local function store(field, left, burst)
  if left >= burst then
    redis.call('HDEL', KEYS[11], field)
  else
    redis.call('HSET', KEYS[11], field, string.format('%.6f:%d', left, now))
  end
end

local budget = tonumber(ARGV[2])
local rate, cap, krate = tonumber(ARGV[5]), tonumber(ARGV[7]), tonumber(ARGV[8])
local burst, kburst = tonumber(ARGV[6]), tonumber(ARGV[9])
local gtokens = 0
if rate > 0 then
  gtokens = tokens('g', rate, burst)
  budget = math.min(budget, math.floor(gtokens))
  if budget <= 0 then
    redis.call('HINCRBY', KEYS[6], 'held_rate', 1)
    return {held, 2, math.max(1, math.ceil((1 - gtokens) / rate))}
  end
end
local own = 0
if cap > 0 then
  own = redis.call('HLEN', KEYS[3])
  local others = 0
  local all = redis.call('HGETALL', KEYS[12])
  for i = 1, #all, 2 do
    if all[i] ~= ARGV[1] then
      local alive = redis.call('ZSCORE', KEYS[2], all[i])
      if alive and tonumber(alive) >= now then
        others = others + tonumber(all[i + 1])
      else
        redis.call('HDEL', KEYS[12], all[i]) -- its lease expired: its slots come back
      end
    end
  end
  budget = math.min(budget, cap - own - others)
  if budget <= 0 then
    redis.call('HSET', KEYS[12], ARGV[1], own)
    redis.call('HINCRBY', KEYS[6], 'held_concurrency', 1)
    return {held, 2, 20}
  end
end

local items = {}
local rescan = false
if krate > 0 then
  -- Per key: a key over its rate is parked, in order, and the others keep flowing.
  local cache = {}
  local function ktokens(key)
    if cache[key] == nil then
      cache[key] = tokens('k:' .. key, krate, kburst)
    end
    return cache[key]
  end
  local function park(key, v)
    local n = redis.call('HINCRBY', KEYS[10], 'p', 1)
    redis.call('ZADD', KEYS[13], 0, key .. '\0' .. string.format('%012x', n) .. v)
    if not redis.call('ZSCORE', KEYS[14], key) then
      local wait = math.max(0, math.ceil((1 - ktokens(key)) / krate))
      redis.call('ZADD', KEYS[14], now + wait, key)
    end
    redis.call('HINCRBY', KEYS[6], 'parked', 1)
  end
  local keys = redis.call('ZRANGEBYSCORE', KEYS[14], '-inf', now, 'LIMIT', 0, budget)
  for _, key in ipairs(keys) do
    local room = math.min(math.floor(ktokens(key)), budget - #items)
    local lo, hi = '[' .. key .. '\0', '(' .. key .. '\1'
    if room > 0 then
      local got = redis.call('ZRANGE', KEYS[13], lo, hi, 'BYLEX', 'LIMIT', 0, room)
      for i = 1, #got do
        redis.call('ZREM', KEYS[13], got[i])
        items[#items + 1] = string.sub(got[i], #key + 14)
      end
      cache[key] = cache[key] - #got
    end
    if #redis.call('ZRANGE', KEYS[13], lo, hi, 'BYLEX', 'LIMIT', 0, 1) == 0 then
      redis.call('ZREM', KEYS[14], key)
    else
      local wait = math.max(0, math.ceil((1 - cache[key]) / krate))
      redis.call('ZADD', KEYS[14], now + wait, key)
    end
  end
  local scanned, limit = 0, budget + 1000
  while #items < budget and scanned < limit do
    local chunk = take(math.min(budget - #items, limit - scanned), {})
    if #chunk == 0 then
      break
    end
    scanned = scanned + #chunk
    for _, v in ipairs(chunk) do
      local _, key = marks(v)
      if key == nil then
        items[#items + 1] = v
      elseif redis.call('ZSCORE', KEYS[14], key) then
        park(key, v) -- behind the ones parked before: FIFO per key
      elseif ktokens(key) >= 1 then
        cache[key] = cache[key] - 1
        items[#items + 1] = v
      else
        park(key, v)
      end
    end
  end
  rescan = scanned >= limit
  for key, left in pairs(cache) do
    store('k:' .. key, left, kburst)
  end
else
  items = take(budget, items)
end
if rate > 0 then
  store('g', gtokens - #items, burst)
end
if cap > 0 then
  redis.call('HSET', KEYS[12], ARGV[1], own + #items)
end
if #items == 0 then
  if rescan then
    return {held, 0, 0}
  end
  local soonest = -1
  local nxt = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
  if #nxt > 0 then
    soonest = math.max(0, tonumber(nxt[2]) - now)
  end
  if krate > 0 then
    local pk = redis.call('ZRANGE', KEYS[14], 0, 0, 'WITHSCORES')
    if #pk > 0 then
      local w = math.max(0, tonumber(pk[2]) - now)
      if soonest < 0 or w < soonest then
        soonest = w
      end
    end
  end
  return {held, 0, soonest}
end
local args = {}
for i = 1, #items do
  args[#args + 1] = ARGV[1] .. ':' .. (first + i - 1)
  args[#args + 1] = items[i]
end
redis.call('HSET', KEYS[3], unpack(args))
table.insert(items, 1, 1)
table.insert(items, 1, held)
return items
