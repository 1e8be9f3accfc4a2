#!lua flags=no-writes
-- schedule_read: a schedule's state and the server's clock, from the node that holds it
-- (so a Cluster's schedules are timed by the same clock that moves them).
--
-- KEYS[1] state  hash  (see protocol/schedule.py for its fields)
--
-- Returns {seconds, microseconds, the hash as a flat field/value list}.
local t = redis.call('TIME')
return {t[1], t[2], redis.call('HGETALL', KEYS[1])}
