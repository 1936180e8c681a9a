-- acquire.lua: take `cost` units from every limit of one scope, or from none of them.
-- The math mirrors src/limits/*.ts; the same test suite runs against both.
--
-- KEYS     one key per limit in policy order; a concurrency limit takes two (its permit set,
--          then its held total). All keys share one hash tag, so they live in one Cluster slot.
-- ARGV[1]  cost: units to take, > 0
-- ARGV[2]  permit id: names the slot taken in every concurrency limit
-- ARGV[3]  n: number of limits
-- ARGV[4+4(i-1) .. 7+4(i-1)]  limit i: algorithm, a, b, per_request
--            1 token_bucket    a = interval ms per unit, b = burst
--            2 fixed_window    a = period ms,            b = capacity
--            3 sliding_window  a = period ms,            b = capacity
--            4 concurrency     a = ttl ms,               b = capacity
--          per_request 1: the limit counts 1 per request instead of the cost
-- Returns  {granted 0|1, decider (1-based limit), remaining, retry_after_ms (-1 = never),
--           reset_after_ms, now_ms}: the decider is the limit that denies longest, or on a
--           grant the one with the least left.
-- Time is Redis TIME, never the caller's clock. Every key written gets a TTL.

local EPSILON = 1e-6
local NEVER = math.huge

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local cost = tonumber(ARGV[1])
local permit = ARGV[2]
local n = tonumber(ARGV[3])

local function units(x)
  if x < 0 then return 0 end
  return math.floor(x + EPSILON)
end

-- Each check takes the units `c` this limit counts and returns allowed, remaining, retry_after,
-- reset_after, and a function that commits the take.

local function token_bucket(key, c, interval, burst)
  local tat = tonumber(redis.call('GET', key)) or 0
  local base = math.max(tat, now)
  local window = burst * interval
  local left = units((now + window - base) / interval)
  if c > burst then return false, left, NEVER, base - now end
  local next_tat = base + c * interval
  local allow_at = next_tat - window
  if allow_at > now + EPSILON then return false, left, allow_at - now, base - now end
  return true, units((now + window - next_tat) / interval), 0, next_tat - now, function()
    redis.call('SET', key, string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now) + 1)
  end
end

local function fixed_window(key, c, period, capacity)
  local window = math.floor(now / period)
  local stored = redis.call('HMGET', key, 'w', 'c')
  local count = 0
  if tonumber(stored[1]) == window then count = tonumber(stored[2]) end
  local until_next = (window + 1) * period - now
  if c > capacity then return false, capacity - count, NEVER, count > 0 and until_next or 0 end
  if count + c > capacity then return false, capacity - count, until_next, until_next end
  return true, capacity - count - c, 0, until_next, function()
    redis.call('HSET', key, 'w', window, 'c', count + c)
    redis.call('PEXPIRE', key, math.ceil(until_next) + 1)
  end
end

local function sliding_window(key, c, period, capacity)
  local window = math.floor(now / period)
  local stored = redis.call('HMGET', key, 'w', 'c', 'p')
  local stored_window = tonumber(stored[1])
  local current, previous = 0, 0
  if stored_window == window then
    current, previous = tonumber(stored[2]), tonumber(stored[3])
  elseif stored_window == window - 1 then
    previous = tonumber(stored[2])
  end
  local elapsed = now - window * period
  local estimate = previous * (period - elapsed) / period + current
  local function reset_after(cur)
    if cur > 0 then return 2 * period - elapsed end
    if previous > 0 then return period - elapsed end
    return 0
  end
  local left = units(capacity - estimate)
  if c > capacity then return false, left, NEVER, reset_after(current) end
  if estimate + c > capacity + EPSILON then
    local room = capacity - c
    local retry
    if current <= room then
      retry = period - elapsed - period * (room - current) / previous
    else
      retry = period - elapsed + period - period * room / current
    end
    return false, left, math.max(retry, EPSILON), reset_after(current)
  end
  return true, units(capacity - estimate - c), 0, reset_after(current + c), function()
    redis.call('HSET', key, 'w', window, 'c', current + c, 'p', previous)
    redis.call('PEXPIRE', key, math.ceil(2 * period - elapsed) + 1)
  end
end

-- Permits are members "<c>:<permit id>" scored by expiry; the held total is kept beside them
-- so a check costs O(log n) plus the permits it reclaims.
local function concurrency(set, total, c, ttl, capacity)
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
  if c > capacity then return false, capacity - held, NEVER, reset end
  if held + c > capacity then
    local retry = NEVER
    local freed = held
    local permits = redis.call('ZRANGE', set, 0, -1, 'WITHSCORES')
    for i = 1, #permits, 2 do
      freed = freed - tonumber(string.match(permits[i], '^(%d+):'))
      if freed + c <= capacity then
        retry = tonumber(permits[i + 1]) - now
        break
      end
    end
    return false, capacity - held, retry, reset
  end
  return true, capacity - held - c, 0, ttl, function()
    redis.call('ZADD', set, now + ttl, c .. ':' .. permit)
    redis.call('SET', total, held + c, 'PX', ttl + 1)
    redis.call('PEXPIRE', set, ttl + 1)
  end
end

local commits = {}
local granted = true
local decider, decider_remaining, decider_retry, decider_reset = 0, 0, 0, 0
local tightest = NEVER
local key = 1
for i = 1, n do
  local at = 4 + 4 * (i - 1)
  local algorithm, a, b = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
  local c = cost
  if ARGV[at + 3] == '1' then c = 1 end
  local allowed, remaining, retry, reset, commit
  if algorithm == 1 then
    allowed, remaining, retry, reset, commit = token_bucket(KEYS[key], c, a, b)
  elseif algorithm == 2 then
    allowed, remaining, retry, reset, commit = fixed_window(KEYS[key], c, a, b)
  elseif algorithm == 3 then
    allowed, remaining, retry, reset, commit = sliding_window(KEYS[key], c, a, b)
  else
    allowed, remaining, retry, reset, commit = concurrency(KEYS[key], KEYS[key + 1], c, a, b)
    key = key + 1
  end
  key = key + 1
  if not allowed then
    if granted or retry > decider_retry then
      decider, decider_remaining, decider_retry, decider_reset = i, remaining, retry, reset
    end
    granted = false
  elseif granted and remaining < tightest then
    tightest = remaining
    decider, decider_remaining, decider_retry, decider_reset = i, remaining, 0, reset
  end
  commits[i] = commit
end

if granted then
  for i = 1, n do commits[i]() end
end

local retry_ms = -1
if decider_retry ~= NEVER then retry_ms = math.ceil(decider_retry) end
return {granted and 1 or 0, decider, decider_remaining, retry_ms, math.ceil(decider_reset), math.floor(now)}
