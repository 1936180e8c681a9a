-- acquire.lua: take `cost` units from every limit of one scope, or from none of them. A lease
-- may ask for more than the cost (want): then each limit gives up to `want` of what it has.
-- The math mirrors src/limits/*.ts; the same test suite runs against both.
--
-- KEYS     the limits' keys (limits.lua), then the line's keys (line.lua). Each limit key's name
--          says which algorithm's state it holds (redis-store.ts keySuffixes), so a key is only
--          ever read by the algorithm that wrote it.
-- ARGV[1]  cost: units to take, > 0
-- ARGV[2]  usable: the fraction of every limit the request may use, 0 < usable <= 1; the rest is
--          reserved for higher priorities (src/limits/algorithm.ts usableUnits rounds it alike)
-- ARGV[3]  permit id: names the slot taken in every concurrency limit
-- ARGV[4 .. 4+4n]  the limits (limits.lua)
-- ARGV[5+4n]  priority: with requests waiting in the scope's line, a request that does not wait
--          goes only ahead of them all (a priority above every waiting one); a lease never
-- ARGV[6+4n .. 5+5n]  optional, for a lease: want per limit (units to take if there)
-- ARGV[6+5n]  with want, for a lease: ahead_ms: a token bucket counts units that fall due within
--          ahead_ms of now (but before the soonest window end) as there: a slice of its schedule
-- Returns  {granted 0|1, decider (1-based limit), remaining, retry_after_ms (-1 = never),
--           reset_after_ms, now_ms, window_ends_in_ms (-1 = no window limit),
--           reserved (1: the decider denied only for the part reserved for higher priorities),
--           waiting (requests in line ahead of this one: it was denied for them),
--           then per limit: taken, left, due_in_us}
--          due_in_us: whole microseconds from now, rounded up, until the first unit taken falls
--          due (0 or less: at once); a token bucket's next units follow one interval apart.
--          The decider is the limit that denies longest, or on a grant the one with least left.
-- Time is Redis TIME, never the caller's clock. Every key written gets a TTL.
-- Loaded after prelude.lua, limits.lua and line.lua.

local cost = tonumber(ARGV[1])
usable = tonumber(ARGV[2])
permit = ARGV[3]
local priority = tonumber(ARGV[5 + 4 * n])
local leasing = #ARGV >= 6 + 5 * n
use_line(limit_keys + 1, #KEYS - limit_keys - 3)
local want = nil
if leasing then
  want = {}
  for i = 1, n do want[i] = tonumber(ARGV[5 + 4 * n + i]) end
  ahead = tonumber(ARGV[6 + 5 * n])
  -- Units due after a window of the resource closes could not be served with that window's.
  for i = 1, n do
    local algorithm, period = tonumber(ARGV[5 + 4 * (i - 1)]), tonumber(ARGV[6 + 4 * (i - 1)])
    if algorithm == 2 or algorithm == 3 then ahead = math.min(ahead, (math.floor(now / period) + 1) * period - now) end
  end
end

-- Requests waiting in line go first: this one only when its priority is above all of theirs.
local waiting = 0
if redis.call('EXISTS', KEYS[DUE]) == 1 then
  prune()
  local _, _, first_score = first_in_line(nil)
  if first_score ~= nil and (leasing or -priority >= first_score) then waiting = waiting_count() end
end

local r = check_limits(cost, want)
local granted = r.granted and waiting == 0
if granted then commit_limits(r) end

local retry_ms = -1
if r.retry ~= NEVER then retry_ms = math.ceil(r.retry) end
if waiting > 0 and retry_ms >= 0 then
  -- Denied for those ahead: come back about when they will have been served, at the pace of
  -- the slowest token bucket (one unit each, at least), never sooner than the limits say.
  local interval = 0
  for i = 1, n do
    if ARGV[5 + 4 * (i - 1)] == '1' then interval = math.max(interval, tonumber(ARGV[6 + 4 * (i - 1)])) end
  end
  retry_ms = math.max(retry_ms, math.ceil(waiting * interval), 1)
end
local window_ms = -1
if window_ends ~= NEVER then window_ms = math.floor(window_ends) end
local reply = {granted and 1 or 0, r.decider, r.remaining, retry_ms, math.ceil(r.reset), math.floor(now), window_ms,
  (not r.granted and r.reserved) and 1 or 0, waiting}
for i = 1, n do
  reply[#reply + 1] = granted and r.taken[i] or 0
  reply[#reply + 1] = r.left[i]
  reply[#reply + 1] = granted and math.ceil(r.due[i] * 1000 - EPSILON) or 0
end
return reply
