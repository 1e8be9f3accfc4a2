-- schedule_set: declare or redefine a schedule (compare-and-set on its definition).
--
-- KEYS[1] state  hash
-- ARGV[1] the digest the caller read ('' when the schedule was not there)
-- ARGV[2] the new digest; ARGV[3] the new next tick (server ms)
--
-- A deploy upserts by content: an unchanged schedule is never sent here, so it keeps its
-- next tick; a changed one gets a next tick computed from its new definition. Counters,
-- the last tick and the pause flag are kept. Returns 1, or 0 when another worker changed
-- the definition first (the caller reads again).
local d = redis.call('HGET', KEYS[1], 'd') or ''
if d ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'd', ARGV[2], 'n', ARGV[3])
return 1
