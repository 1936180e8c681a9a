-- settle.lua: after the fact, give units back to one scope's limits or charge them more, and
-- free a permit's concurrency slots. Used by Release (settle the real cost, free the slot) and
-- by lease refunds. Applied at most once per marker, so a retried call changes nothing.
-- The math mirrors the settle* functions of src/limits/*.ts.
--
-- KEYS     as for acquire.lua (one key per limit, two for a concurrency limit), then the marker
-- ARGV[1]  marker ttl ms: how long the marker remembers that this settlement was applied
-- ARGV[2]  permit id, or '' when no concurrency slot is to be freed
-- ARGV[3]  n: number of limits
-- ARGV[4 .. 3+4n]  the limits, four values each, as for acquire.lua
-- ARGV[4+4n .. 3+5n]  amount per limit: for a rate limit, units to charge (> 0) or refund (< 0);
--          for a concurrency limit, the units the permit holds (its member is "<units>:<id>")
-- ARGV[4+5n]  taken_at: the store's time (ms) of the grant, which finds the window it charged
-- Returns  1 when applied, 0 when the marker shows it was applied before.

if redis.call('SET', KEYS[#KEYS], '1', 'NX', 'PX', ARGV[1]) == false then return 0 end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local permit = ARGV[2]
local n = tonumber(ARGV[3])
local taken_at = tonumber(ARGV[4 + 5 * n])

local function token_bucket(key, delta, interval)
  local tat = tonumber(redis.call('GET', key)) or 0
  local next_tat = math.max(math.max(tat, now) + delta * interval, now)
  if next_tat > now then
    redis.call('SET', key, string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now) + 1)
  else
    redis.call('DEL', key)
  end
end

-- A refund goes back to the window that was charged, and only while it is open.
local function fixed_window(key, delta, period)
  local window = math.floor(now / period)
  local stored = redis.call('HMGET', key, 'w', 'c')
  local count = 0
  if tonumber(stored[1]) == window then count = tonumber(stored[2]) end
  if delta < 0 then
    if math.floor(taken_at / period) ~= window then return end
    count = math.max(0, count + delta)
  else
    count = count + delta
  end
  redis.call('HSET', key, 'w', window, 'c', count)
  redis.call('PEXPIRE', key, math.ceil((window + 1) * period - now) + 1)
end

local function sliding_window(key, delta, period)
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
    local charged = math.floor(taken_at / period)
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

local function concurrency(set, total, units)
  if redis.call('ZREM', set, units .. ':' .. permit) == 0 then return end
  if redis.call('DECRBY', total, units) <= 0 then redis.call('DEL', total) end
end

local key = 1
for i = 1, n do
  local at = 4 + 4 * (i - 1)
  local algorithm, a = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  local amount = ARGV[3 + 4 * n + i]
  if algorithm == 4 then
    if permit ~= '' then concurrency(KEYS[key], KEYS[key + 1], amount) end
    key = key + 1
  else
    local delta = tonumber(amount)
    if delta ~= 0 then
      if algorithm == 1 then
        token_bucket(KEYS[key], delta, a)
      elseif algorithm == 2 then
        fixed_window(KEYS[key], delta, a)
      else
        sliding_window(KEYS[key], delta, a)
      end
    end
  end
  key = key + 1
end
return 1
