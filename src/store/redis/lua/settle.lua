-- settle.lua: after the fact, give units back to one scope's limits or charge them more, and
-- free a permit's concurrency slots. Used by Release (settle the real cost, free the slot) and
-- by lease refunds. Applied at most once per marker, so a retried call changes nothing.
-- The math mirrors the settle* functions of src/limits/*.ts: a refund never fills a limit past
-- full, and a charge drains it at most (never locks a key beyond the limit's own horizon).
--
-- KEYS     as for acquire.lua (the limits' keys, then the line's), then the marker
-- ARGV[1]  marker ttl ms: how long the marker remembers that this settlement was applied
-- ARGV[2]  permit id, or '' when no concurrency slot is to be freed
-- ARGV[3]  n: number of limits
-- ARGV[4 .. 3+4n]  the limits, four values each, as for acquire.lua
-- ARGV[4+4n .. 3+5n]  amount per limit: for a rate limit, units to charge (> 0) or refund (< 0);
--          for a concurrency limit, the units the permit holds (its member is "<units>:<id>")
-- ARGV[4+5n]  taken_at: the store's time (ms) of the grant, which finds the window it charged
-- ARGV[5+5n]  channel prefix: with requests waiting in the scope's line, the sidecars of those
--          first in line are woken, since budget may have come back (line.lua)
-- Returns  1 when applied, 0 when the marker shows it was applied before.
--
-- Redis does not undo a script's writes when it fails part-way, so everything is read and
-- computed first and written last: the marker and the settlement land together or not at all.
-- Loaded after prelude.lua and line.lua.

if redis.call('EXISTS', KEYS[#KEYS]) == 1 then return 0 end

local permit = ARGV[2]
local n = tonumber(ARGV[3])
local taken_at = tonumber(ARGV[4 + 5 * n]) or now

-- Each settles one limit from what it reads and returns the function that writes the result,
-- or nil when nothing changes.

-- A TAT leased ahead of now + burst (units taken before they fall due) is never pulled back by a
-- charge; a refund moves it back by what it returns.
local function token_bucket(key, delta, interval, burst)
  local tat = tonumber(redis.call('GET', key)) or 0
  local base = math.max(tat, now)
  local next_tat = base + delta * interval
  if delta < 0 then
    next_tat = math.max(next_tat, now)
  else
    next_tat = math.min(next_tat, math.max(base, now + burst * interval))
  end
  if next_tat > now then
    return function() redis.call('SET', key, string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now) + 1) end
  end
  return function() redis.call('DEL', key) end
end

-- A refund goes back to the window that was charged, and only while it is open.
local function fixed_window(key, delta, period, capacity)
  local window = math.floor(now / period)
  local count = load_fixed_window(key, window)
  if delta < 0 then
    if math.floor(taken_at / period) ~= window then return nil end
    count = math.max(0, count + delta)
  else
    count = math.min(count + delta, capacity)
  end
  return function()
    redis.call('HSET', key, 'w', window, 'c', count)
    redis.call('PEXPIRE', key, math.ceil((window + 1) * period - now) + 1 + expiry_jitter())
  end
end

local function sliding_window(key, delta, period, capacity)
  local window = math.floor(now / period)
  local current, previous = load_sliding_window(key, window)
  if delta >= 0 then
    current = math.min(current + delta, capacity)
  else
    local charged = math.floor(taken_at / period)
    if charged == window then
      current = math.max(0, current + delta)
    elseif charged == window - 1 then
      previous = math.max(0, previous + delta)
    else
      return nil
    end
  end
  return function()
    redis.call('HSET', key, 'w', window, 'c', current, 'p', previous)
    redis.call('PEXPIRE', key, math.ceil((window + 2) * period - now) + 1 + expiry_jitter())
  end
end

local function concurrency(set, total, units)
  if not redis.call('ZSCORE', set, units .. ':' .. permit) then return nil end
  local held = (tonumber(redis.call('GET', total)) or 0) - (tonumber(units) or 0)
  return function()
    redis.call('ZREM', set, units .. ':' .. permit)
    if held > 0 then redis.call('SET', total, held, 'KEEPTTL') else redis.call('DEL', total) end
  end
end

local writes = {}
local key = 1
for i = 1, n do
  local at = 4 + 4 * (i - 1)
  local algorithm, a, b = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
  local amount = ARGV[3 + 4 * n + i]
  local write
  if algorithm == 4 then
    if permit ~= '' then write = concurrency(KEYS[key], KEYS[key + 1], amount) end
    key = key + 1
  else
    local delta = tonumber(amount) or 0
    if delta ~= 0 then
      if algorithm == 1 then
        write = token_bucket(KEYS[key], delta, a, b)
      elseif algorithm == 2 then
        write = fixed_window(KEYS[key], delta, a, b)
      else
        write = sliding_window(KEYS[key], delta, a, b)
      end
    end
  end
  if write then writes[#writes + 1] = write end
  key = key + 1
end

redis.call('SET', KEYS[#KEYS], '1', 'PX', ARGV[1])
for _, write in ipairs(writes) do write() end
use_line(key, #KEYS - key - 3)
if redis.call('EXISTS', KEYS[DUE]) == 1 then wake_heads(ARGV[5 + 5 * n]) end
return 1
