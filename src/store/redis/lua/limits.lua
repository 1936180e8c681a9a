-- limits.lua: the checks of every algorithm, shared by acquire.lua and wait.lua. Redis scripts
-- cannot include files, so redis-store.ts prepends this text (after prelude.lua) to each of them.
-- The math mirrors src/limits/*.ts; the same test suite runs against both stores.
--
-- The limits are in ARGV from ARGV[4] on, as every script that checks them lays them out:
-- ARGV[4]  n: number of limits
-- ARGV[5+4(i-1) .. 8+4(i-1)]  limit i: algorithm, a, b, per_request
--            1 token_bucket    a = interval ms per unit, b = burst
--            2 fixed_window    a = period ms,            b = capacity
--            3 sliding_window  a = period ms,            b = capacity
--            4 concurrency     a = ttl ms,               b = capacity
--          per_request 1: the limit counts 1 per request instead of the cost
-- KEYS begin with one key per limit in policy order; a concurrency limit takes two (its permit
-- set, then its held total). All keys share one hash tag, so they live in one Cluster slot.

local EPSILON = 1e-6
local NEVER = math.huge

local n = tonumber(ARGV[4])
-- The KEYS index of each limit's first key, and how many KEYS the limits take in all.
local limit_key, limit_keys = {}, 0
for i = 1, n do
  limit_key[i] = limit_keys + 1
  limit_keys = limit_keys + ((ARGV[5 + 4 * (i - 1)] == '4') and 2 or 1)
end

-- What the checks read besides a limit's own state, set by the script before it checks:
-- usable: the fraction of every limit the request may use, 0 < usable <= 1 (the rest is reserved
--   for higher priorities; src/limits/algorithm.ts usableUnits rounds it alike);
-- ahead: ms ahead of now that a token bucket counts units as there (a lease's slice);
-- permit: the id naming the slot a concurrency limit gives.
-- The checks set `reserved` (the deciding denial was only for the part reserved above the
-- request's priority) and lower `window_ends` (ms until the soonest window of a window limit ends).
local usable, ahead, permit = 1, 0, ''
local reserved = false
local window_ends = NEVER

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
  local reset = 0
  if count + taken > 0 then reset = until_next end
  return true, taken, available - taken, 0, reset, function()
    redis.call('HSET', key, 'w', window, 'c', count + taken)
    redis.call('PEXPIRE', key, math.ceil(until_next) + 1 + expiry_jitter())
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
    redis.call('PEXPIRE', key, math.ceil(2 * period - elapsed) + 1 + expiry_jitter())
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
  if need > 0 then reset = ttl end
  return true, need, capacity - held - need, 0, reset, function()
    redis.call('ZADD', set, now + ttl, string.format('%d', need) .. ':' .. permit)
    redis.call('SET', total, held + need, 'PX', ttl + 1)
    redis.call('PEXPIRE', set, ttl + 1)
  end
end

-- Checks `cost` against every limit. want (nil, or units per limit for a lease) asks each limit
-- for up to that many. Returns a table: granted, decider (the limit that denies longest, or on a
-- grant the one with least left), remaining, retry (ms, NEVER = never), reset (ms), reserved
-- (the decider denied only for what is reserved above the request), and per limit: commit (a
-- function that writes the take), taken, left, due (ms until the first unit taken falls due),
-- resets (ms until the limit is full again).
-- Nothing is written: the caller runs every commit on a grant. A cost of 0 (inspect.lua) takes
-- nothing from any limit, also from one that counts requests: it reads each limit's state.
local function check_limits(cost, want)
  local result = {granted = true, decider = 0, remaining = 0, retry = 0, reset = 0, reserved = false,
    commits = {}, taken = {}, left = {}, due = {}, resets = {}}
  local tightest = NEVER
  for i = 1, n do
    local at = 5 + 4 * (i - 1)
    local algorithm, a, b = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
    local need = cost
    if ARGV[at + 3] == '1' and cost > 0 then need = 1 end
    local wanted = need
    if want then wanted = math.max(need, want[i]) end
    local key = limit_key[i]
    local allowed, took, remaining, retry, reset, commit, due
    reserved = false
    if algorithm == 1 then
      allowed, took, remaining, retry, reset, commit, due = token_bucket(KEYS[key], need, wanted, a, b)
    elseif algorithm == 2 then
      allowed, took, remaining, retry, reset, commit = fixed_window(KEYS[key], need, wanted, a, b)
    elseif algorithm == 3 then
      allowed, took, remaining, retry, reset, commit = sliding_window(KEYS[key], need, wanted, a, b)
    else
      allowed, took, remaining, retry, reset, commit = concurrency(KEYS[key], KEYS[key + 1], need, a, b)
    end
    if not allowed then
      if result.granted or retry > result.retry then
        result.decider, result.remaining, result.retry, result.reset = i, remaining, retry, reset
        result.reserved = reserved
      end
      result.granted = false
    elseif result.granted and remaining < tightest then
      tightest = remaining
      result.decider, result.remaining, result.retry, result.reset = i, remaining, 0, reset
    end
    result.commits[i], result.taken[i], result.left[i], result.due[i] = commit, took, remaining, due or 0
    result.resets[i] = reset
  end
  return result
end

-- Writes a granted check.
local function commit_limits(result)
  for i = 1, n do result.commits[i]() end
end
