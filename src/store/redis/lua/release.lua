-- release.lua: give back one grant. Frees its slot in every concurrency limit and settles its
-- real cost in every rate limit: a negative delta refunds, a positive one charges the extra.
-- The math mirrors the settle* functions of src/limits/*.ts.
--
-- KEYS     as for acquire.lua: one key per limit, two for a concurrency limit.
-- ARGV[1]  cost the grant took (with ARGV[2], names its member in the permit sets)
-- ARGV[2]  permit id
-- ARGV[3]  n: number of limits
-- ARGV[4 .. 3+4n]  the limits, four values each, as for acquire.lua
-- ARGV[4+4n]  delta: units to charge (> 0), refund (< 0) or 0 to only free concurrency slots;
--             limits that count requests are not settled
-- ARGV[5+4n]  granted_at: the store's time of the grant in ms (finds the window charged)
-- Returns  the number of concurrency slots freed.
-- The caller releases each grant once; a slot already reclaimed by its ttl is not freed twice.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local cost = ARGV[1]
local permit = ARGV[2]
local n = tonumber(ARGV[3])
local delta = tonumber(ARGV[4 + 4 * n])
local granted_at = tonumber(ARGV[5 + 4 * n])

local function token_bucket(key, interval)
  local tat = tonumber(redis.call('GET', key)) or 0
  local next_tat = math.max(math.max(tat, now) + delta * interval, now)
  if next_tat > now then
    redis.call('SET', key, string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now) + 1)
  else
    redis.call('DEL', key)
  end
end

local function fixed_window(key, period)
  local window = math.floor(now / period)
  local stored = redis.call('HMGET', key, 'w', 'c')
  local count = 0
  if tonumber(stored[1]) == window then count = tonumber(stored[2]) end
  if delta < 0 then
    if math.floor(granted_at / period) ~= window then return end
    count = math.max(0, count + delta)
  else
    count = count + delta
  end
  redis.call('HSET', key, 'w', window, 'c', count)
  redis.call('PEXPIRE', key, math.ceil((window + 1) * period - now) + 1)
end

local function sliding_window(key, period)
  local window = math.floor(now / period)
  local stored = redis.call('HMGET', key, 'w', 'c', 'p')
  local stored_window = tonumber(stored[1])
  local current, previous = 0, 0
  if stored_window == window then
    current, previous = tonumber(stored[2]), tonumber(stored[3])
  elseif stored_window == window - 1 then
    previous = tonumber(stored[2])
  end
  if delta >= 0 then
    current = current + delta
  else
    local charged = math.floor(granted_at / period)
    if charged == window then
      current = math.max(0, current + delta)
    elseif charged == window - 1 then
      previous = math.max(0, previous + delta)
    else
      return
    end
  end
  redis.call('HSET', key, 'w', window, 'c', current, 'p', previous)
  redis.call('PEXPIRE', key, math.ceil((window + 2) * period - now) + 1)
end

local function concurrency(set, total, c)
  if redis.call('ZREM', set, c .. ':' .. permit) == 0 then return 0 end
  if redis.call('DECRBY', total, c) <= 0 then redis.call('DEL', total) end
  return 1
end

local freed = 0
local key = 1
for i = 1, n do
  local at = 4 + 4 * (i - 1)
  local algorithm, a, per_request = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), ARGV[at + 3] == '1'
  if algorithm == 4 then
    freed = freed + concurrency(KEYS[key], KEYS[key + 1], per_request and '1' or cost)
    key = key + 1
  elseif delta ~= 0 and not per_request then
    if algorithm == 1 then
      token_bucket(KEYS[key], a)
    elseif algorithm == 2 then
      fixed_window(KEYS[key], a)
    else
      sliding_window(KEYS[key], a)
    end
  end
  key = key + 1
end
return freed
