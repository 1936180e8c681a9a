-- heartbeat.lua: a sidecar says it is alive, and learns how many share this Redis (the local
-- share of a limit, when Redis is lost, is the limit divided by that number).
--
-- KEYS[1]  the sidecars, each scored by the store time (ms) of its last heartbeat
-- ARGV[1]  this sidecar's id
-- ARGV[2]  ttl ms: a sidecar not heard from for this long no longer counts
-- Returns  the number of live sidecars, this one included.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZCARD', KEYS[1])
