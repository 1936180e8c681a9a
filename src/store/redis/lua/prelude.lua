-- prelude.lua: what every script that reads limits shares. Redis scripts cannot include files, so
-- redis-store.ts prepends this text to each of them when it loads them (the SHA is of the whole).
-- It only defines; each script runs from its own first line.

-- redis-store.ts puts the store's settings before this text:
-- EXPIRY_JITTER_MS  a window key expires up to this much after its window's end (store.redis.expiry_jitter)

-- The store's clock in ms: Redis TIME, never the caller's clock.
local function store_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end

-- One clock reading a call: every decision in it is made at the same moment.
local now = store_now()

-- How much later than its window's end a window key expires: 0 to EXPIRY_JITTER_MS, so that the
-- keys of one window do not all expire at once. The clock's microseconds, scrambled by Knuth's
-- multiplicative hash, stand in for a random number (a script's math.random is not random); a
-- key's TTL is set on every write, so the last write of a window draws it.
local function expiry_jitter()
  if EXPIRY_JITTER_MS <= 0 then return 0 end
  local micros = math.floor(now * 1000) % 1000000
  return (micros * 2654435761) % 4294967296 % EXPIRY_JITTER_MS
end

-- A fixed window's count, as of `window` (0 once the stored window has closed).
local function load_fixed_window(key, window)
  local stored = redis.call('HMGET', key, 'w', 'c')
  if tonumber(stored[1]) == window then return tonumber(stored[2]) or 0 end
  return 0
end

-- A sliding window's counters rolled to `window`: current, previous.
local function load_sliding_window(key, window)
  local stored = redis.call('HMGET', key, 'w', 'c', 'p')
  local stored_window = tonumber(stored[1])
  if stored_window == window then return tonumber(stored[2]) or 0, tonumber(stored[3]) or 0 end
  if stored_window == window - 1 then return 0, tonumber(stored[2]) or 0 end
  return 0, 0
end
