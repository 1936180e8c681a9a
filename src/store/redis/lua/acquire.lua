-- acquire.lua: take `cost` units from every limit of one scope, or from none of them. A lease
-- may ask for more than the cost (want): then each limit gives up to `want` of what it has.
-- The math mirrors src/limits/*.ts; the same test suite runs against both.
--
-- KEYS     one key per limit in policy order; a concurrency limit takes two (its permit set,
--          then its held total). All keys share one hash tag, so they live in one Cluster slot.
--          Each key's name says which algorithm's state it holds (redis-store.ts keySuffixes),
--          so a key is only ever read by the algorithm that wrote it.
-- ARGV[1]  cost: units to take, > 0
-- ARGV[2]  usable: the fraction of every limit the request may use, 0 < usable <= 1; the rest is
--          reserved for higher priorities (src/limits/algorithm.ts usableUnits rounds it alike)
-- ARGV[3]  permit id: names the slot taken in every concurrency limit
-- ARGV[4]  n: number of limits
-- ARGV[5+4(i-1) .. 8+4(i-1)]  limit i: algorithm, a, b, per_request
--            1 token_bucket    a = interval ms per unit, b = burst
--            2 fixed_window    a = period ms,            b = capacity
--            3 sliding_window  a = period ms,            b = capacity
--            4 concurrency     a = ttl ms,               b = capacity
--          per_request 1: the limit counts 1 per request instead of the cost
-- ARGV[5+4n .. 4+5n]  optional, for a lease: want per limit (units to take if there)
-- ARGV[5+5n]  with want, for a lease: ahead_ms: a token bucket counts units that fall due within
--          ahead_ms of now (but before the soonest window end) as there: a slice of its schedule
-- Returns  {granted 0|1, decider (1-based limit), remaining, retry_after_ms (-1 = never),
--           reset_after_ms, now_ms, window_ends_in_ms (-1 = no window limit),
--           reserved (1: the decider denied only for the part reserved for higher priorities),
--           then per limit: taken, left, due_in_us}
--          due_in_us: whole microseconds from now, rounded up, until the first unit taken falls
--          due (0 or less: at once); a token bucket's next units follow one interval apart.
--          The decider is the limit that denies longest, or on a grant the one with least left.
-- Time is Redis TIME, never the caller's clock. Every key written gets a TTL.
-- Loaded after prelude.lua (store_now, load_fixed_window, load_sliding_window).

local EPSILON = 1e-6
local NEVER = math.huge

local now = store_now()
local cost = tonumber(ARGV[1])
local usable = tonumber(ARGV[2])
local permit = ARGV[3]
local n = tonumber(ARGV[4])
local leasing = #ARGV >= 5 + 5 * n
local window_ends = NEVER
local ahead = 0
if leasing then
  ahead = tonumber(ARGV[5 + 5 * n])
  -- Units due after a window of the resource closes could not be served with that window's.
  for i = 1, n do
    local algorithm, period = tonumber(ARGV[5 + 4 * (i - 1)]), tonumber(ARGV[6 + 4 * (i - 1)])
    if algorithm == 2 or algorithm == 3 then ahead = math.min(ahead, (math.floor(now / period) + 1) * period - now) end
  end
end

local function floor_units(x)
  if x < 0 then return 0 end
  return math.floor(x + EPSILON)
end

local function take_of(need, want, available)
  return math.max(need, math.min(want, available))
end

-- The units of a capacity the request may use: floored, so the reserve is never less than its
-- fraction (usableUnits in src/limits/algorithm.ts).
local function usable_units(capacity)
  if usable >= 1 then return capacity end
  return math.floor(capacity * usable + 1e-9)
end

-- Each check takes the units `need` this limit counts for the request and `want` for a lease,
-- and returns allowed, taken, left, retry_after, reset_after, a function that commits, and for
-- a schedule the ms until the first unit taken falls due. A denial sets `reserved` when the
-- whole limit (the reserve included) would not have denied.

-- The TAT is a schedule: the unit that moves it to t falls due at t - burst x interval. A lease
-- may take units up to `ahead` ms before they fall due; it serves none of them sooner.
local reserved = false

local function token_bucket(key, need, want, interval, capacity)
  local tat = tonumber(redis.call('GET', key)) or 0
  local base = math.max(tat, now)
  local burst = usable_units(capacity)
  local window = burst * interval
  local available = floor_units((now + window - base) / interval)
  if need > burst then
    reserved = need <= capacity
    return false, 0, available, NEVER, base - now
  end
  local allow_at = base + need * interval - window
  if allow_at > now + ahead + EPSILON then
    reserved = burst < capacity and allow_at - (capacity - burst) * interval <= now + ahead + EPSILON
    return false, 0, available, allow_at - now, base - now
  end
  if ahead > 0 then available = floor_units((now + ahead + window - base) / interval) end
  local taken = take_of(need, want, available)
  local next_tat = base + taken * interval
  return true, taken, floor_units((now + window - next_tat) / interval), 0, next_tat - now, function()
    redis.call('SET', key, string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now) + 1)
  end, base + interval - window - now
end

local function fixed_window(key, need, want, period, full)
  local window = math.floor(now / period)
  local count = load_fixed_window(key, window)
  local capacity = usable_units(full)
  local available = math.max(0, capacity - count)
  local until_next = (window + 1) * period - now
  window_ends = math.min(window_ends, until_next)
  if need > capacity then
    reserved = need <= full
    return false, 0, available, NEVER, count > 0 and until_next or 0
  end
  if need > available then
    reserved = count + need <= full
    return false, 0, available, until_next, until_next
  end
  local taken = take_of(need, want, available)
  return true, taken, available - taken, 0, until_next, function()
    redis.call('HSET', key, 'w', window, 'c', count + taken)
    redis.call('PEXPIRE', key, math.ceil(until_next) + 1)
  end
end

local function sliding_window(key, need, want, period, full)
  local capacity = usable_units(full)
  local window = math.floor(now / period)
  local current, previous = load_sliding_window(key, window)
  local elapsed = now - window * period
  window_ends = math.min(window_ends, period - elapsed)
  local estimate = previous * (period - elapsed) / period + current
  local function reset_after(cur)
    if cur > 0 then return 2 * period - elapsed end
    if previous > 0 then return period - elapsed end
    return 0
  end
  local available = floor_units(capacity - estimate)
  if need > capacity then
    reserved = need <= full
    return false, 0, available, NEVER, reset_after(current)
  end
  if estimate + need > capacity + EPSILON then
    reserved = estimate + need <= full + EPSILON
    local room = capacity - need
    local retry
    if current <= room then
      retry = period - elapsed - period * (room - current) / previous
    else
      retry = period - elapsed + period - period * room / current
    end
    return false, 0, available, math.max(retry, EPSILON), reset_after(current)
  end
  local taken = take_of(need, want, available)
  return true, taken, floor_units(capacity - estimate - taken), 0, reset_after(current + taken), function()
    redis.call('HSET', key, 'w', window, 'c', current + taken, 'p', previous)
    redis.call('PEXPIRE', key, math.ceil(2 * period - elapsed) + 1)
  end
end

-- Permits are members "<units>:<permit id>" scored by expiry; the held total is kept beside
-- them, so a check costs O(log n) plus the permits it reclaims, and a denial reads only the
-- permits that must expire for the request to fit: each holds one unit or more, so no more of
-- them than units are lacking (one, for requests of one unit). Slots are never leased.
local function concurrency(set, total, need, ttl, full)
  local capacity = usable_units(full)
  local held = tonumber(redis.call('GET', total)) or 0
  local expired = redis.call('ZRANGEBYSCORE', set, '-inf', now)
  if #expired > 0 then
    for _, member in ipairs(expired) do
      held = held - tonumber(string.match(member, '^(%d+):'))
    end
    redis.call('ZREMRANGEBYSCORE', set, '-inf', now)
    if held > 0 then redis.call('SET', total, held, 'KEEPTTL') else redis.call('DEL', total) end
  end
  local last = redis.call('ZRANGE', set, -1, -1, 'WITHSCORES')
  local reset = 0
  if #last > 0 then reset = tonumber(last[2]) - now end
  local remaining = math.max(0, capacity - held)
  if need > capacity then
    reserved = need <= full
    return false, 0, remaining, NEVER, reset
  end
  if held + need > capacity then
    reserved = held + need <= full
    local retry = NEVER
    local freed = held
    local permits = redis.call('ZRANGE', set, 0, string.format('%d', held + need - capacity - 1), 'WITHSCORES')
    for i = 1, #permits, 2 do
      freed = freed - tonumber(string.match(permits[i], '^(%d+):'))
      if freed + need <= capacity then
        retry = tonumber(permits[i + 1]) - now
        break
      end
    end
    return false, 0, remaining, retry, reset
  end
  return true, need, capacity - held - need, 0, ttl, function()
    redis.call('ZADD', set, now + ttl, string.format('%d', need) .. ':' .. permit)
    redis.call('SET', total, held + need, 'PX', ttl + 1)
    redis.call('PEXPIRE', set, ttl + 1)
  end
end

local commits, taken, left, due_in = {}, {}, {}, {}
local granted = true
local decider, decider_remaining, decider_retry, decider_reset = 0, 0, 0, 0
local decider_reserved = false
local tightest = NEVER
local key = 1
for i = 1, n do
  local at = 5 + 4 * (i - 1)
  local algorithm, a, b = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
  local need = cost
  if ARGV[at + 3] == '1' then need = 1 end
  local want = need
  if leasing then want = math.max(need, tonumber(ARGV[4 + 4 * n + i])) end
  local allowed, took, remaining, retry, reset, commit, due
  reserved = false
  if algorithm == 1 then
    allowed, took, remaining, retry, reset, commit, due = token_bucket(KEYS[key], need, want, a, b)
  elseif algorithm == 2 then
    allowed, took, remaining, retry, reset, commit = fixed_window(KEYS[key], need, want, a, b)
  elseif algorithm == 3 then
    allowed, took, remaining, retry, reset, commit = sliding_window(KEYS[key], need, want, a, b)
  else
    allowed, took, remaining, retry, reset, commit = concurrency(KEYS[key], KEYS[key + 1], need, a, b)
    key = key + 1
  end
  key = key + 1
  if not allowed then
    if granted or retry > decider_retry then
      decider, decider_remaining, decider_retry, decider_reset = i, remaining, retry, reset
      decider_reserved = reserved
    end
    granted = false
  elseif granted and remaining < tightest then
    tightest = remaining
    decider, decider_remaining, decider_retry, decider_reset = i, remaining, 0, reset
  end
  commits[i], taken[i], left[i], due_in[i] = commit, took, remaining, due or 0
end

if granted then
  for i = 1, n do commits[i]() end
end

local retry_ms = -1
if decider_retry ~= NEVER then retry_ms = math.ceil(decider_retry) end
local window_ms = -1
if window_ends ~= NEVER then window_ms = math.floor(window_ends) end
local reply = {granted and 1 or 0, decider, decider_remaining, retry_ms, math.ceil(decider_reset), math.floor(now), window_ms,
  (not granted and decider_reserved) and 1 or 0}
for i = 1, n do
  reply[#reply + 1] = granted and taken[i] or 0
  reply[#reply + 1] = left[i]
  reply[#reply + 1] = granted and math.ceil(due_in[i] * 1000 - EPSILON) or 0
end
return reply
