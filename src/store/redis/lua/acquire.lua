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
--          goes only ahead of them all (a priority above every waiting one); a lease never. The
--          line is served first (serve.lua): whoever in it fits now goes before this request.
-- ARGV[6+4n]  channel prefix (line.lua)
-- ARGV[7+4n .. 6+4n+S]  each lane's share when the resource has S > 1 lanes (none otherwise)
-- ARGV[7+4n+S .. 6+5n+S]  optional, for a lease: want per limit (units to take if there)
-- ARGV[7+5n+S]  with want, for a lease: ahead_ms: a token bucket counts units that fall due within
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
-- Loaded after prelude.lua, limits.lua, line.lua and serve.lua.

-- A request denied for those waiting ahead, with no token bucket to pace by, comes back after this at most.
local LINED_RETRY_MS = 1000

local cost = tonumber(ARGV[1])
usable = tonumber(ARGV[2])
permit = ARGV[3]
local priority = tonumber(ARGV[5 + 4 * n])
local prefix = ARGV[6 + 4 * n]
use_line(limit_keys + 1, #KEYS - limit_keys - 3)
local shares = lane_shares(6 + 4 * n)
local wants_at = 6 + 4 * n + (shares and lane_count or 0)
local leasing = #ARGV >= wants_at + n + 1
local want = nil
if leasing then
  want = {}
  for i = 1, n do want[i] = tonumber(ARGV[wants_at + i]) end
  ahead = tonumber(ARGV[wants_at + n + 1])
  -- Units due after a window of the resource closes could not be served with that window's.
  for i = 1, n do
    local algorithm, period = tonumber(ARGV[5 + 4 * (i - 1)]), tonumber(ARGV[6 + 4 * (i - 1)])
    if algorithm == 2 or algorithm == 3 then ahead = math.min(ahead, (math.floor(now / period) + 1) * period - now) end
  end
end

-- Requests waiting in line go first: those that fit now are served, and this one goes only when
-- nobody is left waiting or its priority is above all of theirs. (Serving here keeps a line moving
-- on any call to its scope, also when the sidecars of the tickets in it are gone.)
local waiting = 0
if redis.call('EXISTS', KEYS[DUE]) == 1 then
  prune()
  local _, first_before = first_in_line(shares)
  if first_before ~= nil then
    local _, first, turn = serve_line('', prefix, shares)
    after_serving(first, first_before, '', turn, prefix)
    usable, permit = tonumber(ARGV[2]), ARGV[3]
  end
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
  -- the slowest token bucket (one unit each, at least); without a schedule to pace by, when the
  -- window ends or in a second; never sooner than the limits say.
  local interval = 0
  for i = 1, n do
    if ARGV[5 + 4 * (i - 1)] == '1' then interval = math.max(interval, tonumber(ARGV[6 + 4 * (i - 1)])) end
  end
  local hint = math.ceil(waiting * interval)
  if interval == 0 then hint = math.ceil(math.min(LINED_RETRY_MS, window_ends)) end
  retry_ms = math.max(retry_ms, hint, 1)
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
