-- put_prio: many entries at once, each to its priority (put_many with priority= != 0).
--
-- KEYS[1] ready     list
-- KEYS[2] prio      zset  entries of priority != 0 (see _route.lua)
-- KEYS[3] prio_seq  hash  prio's order counters
-- ARGV    entries, in order
--
-- Returns how many were put.
-- @include route
for i = 1, #ARGV do
  route(KEYS[1], KEYS[2], KEYS[3], ARGV[i], false)
end
return #ARGV
