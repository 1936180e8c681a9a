-- line.lua: a scope's waiting line, shared by acquire.lua, wait.lua and settle.lua (prepended by
-- redis-store.ts after prelude.lua). The TypeScript twin is src/wait/line.ts; the same tests run
-- against both.
--
-- The line's keys follow the limits' keys in KEYS, in the scope's hash slot (use_line says where):
--   due     ZSET  every ticket waiting, or served and not yet collected, scored by the store time
--                 at which it is dropped (a waiting ticket: its arrival + its max wait)
--   served  HASH  ticket id -> the verdict it was served with, until collected or dropped
--   lanes   HASH  lane number -> its virtual time (units served / share) while any lane waits
--   line_l  ZSET  lane l's waiting tickets (l = 1 .. lane_count), scored by -priority; equal
--                 scores sort by member, which begins with the arrival time: first come, first
--                 served, across every sidecar
-- A ticket (member) is "<arrival, us, 16 digits>|<id>|<cost>|<usable>|<lane>|<permit>". Its id
-- is "<sidecar>.<n>"; the sidecar hears about it on the channel <channel prefix><sidecar>:
--   s|<id>|<verdict>  served: granted, the units are charged
--   n|<id>|<verdict>  never: the limits changed so that it can never fit; it left the line
--   t|<id>|<ms>       turn: it is first in line and its units fall due in <ms>
--   w|<id>            wake: budget came back (a Release, a refund); first in line may fit now
-- A verdict is "<decider>|<remaining>|<retry ms, -1 never>|<reset ms>|<now ms>|<reserved 0|1>".

local line_at, lane_count, DUE, SERVED, LANES = 0, 0, 0, 0, 0

-- The line's keys begin at KEYS[at]; `lanes` lines follow its three own keys.
local function use_line(at, lanes)
  line_at, lane_count = at, lanes
  DUE, SERVED, LANES = at, at + 1, at + 2
end

local function line_key(lane)
  return KEYS[line_at + 2 + lane]
end

local function parse_ticket(member)
  local arrival, id, cost, use, lane, held = string.match(member, '^(%d+)|([^|]*)|(%d+)|([^|]*)|(%d+)|(.*)$')
  return {arrival = arrival, id = id, cost = tonumber(cost), usable = tonumber(use), lane = tonumber(lane), permit = held}
end

local function channel_of(prefix, id)
  return prefix .. string.match(id, '^([^.]*)')
end

local function waiting_count()
  local count = 0
  for l = 1, lane_count do count = count + redis.call('ZCARD', line_key(l)) end
  return count
end

-- Drops tickets whose time is up, and served records nobody collected: their sidecars gave up,
-- or died. At most 256 a call; the rest go on the next.
local function prune()
  local expired = redis.call('ZRANGEBYSCORE', KEYS[DUE], '-inf', now, 'LIMIT', 0, 256)
  for _, member in ipairs(expired) do
    local ticket = parse_ticket(member)
    if ticket.id then
      if ticket.lane >= 1 and ticket.lane <= lane_count then redis.call('ZREM', line_key(ticket.lane), member) end
      redis.call('HDEL', KEYS[SERVED], ticket.id)
    end
    redis.call('ZREM', KEYS[DUE], member)
  end
  -- A line its dropped tickets leave empty forgets its lanes' times, as one emptied by serving
  -- does (wait.lua): the next tickets start afresh, no lane owed anything from before.
  if #expired > 0 and waiting_count() == 0 then redis.call('DEL', KEYS[LANES]) end
end

-- The first in line: the highest priority; among lanes whose heads share it, the lane served
-- least for its share (when shares are given); then the earliest arrival. Returns lane, member,
-- score (-priority), or nil when nobody waits.
local function first_in_line(shares)
  local best_lane, best_member, best_score, best_time
  for l = 1, lane_count do
    local head = redis.call('ZRANGE', line_key(l), 0, 0, 'WITHSCORES')
    if #head > 0 then
      local score = tonumber(head[2])
      local time = 0
      if shares then time = tonumber(redis.call('HGET', KEYS[LANES], l)) or 0 end
      local better = best_lane == nil or score < best_score
        or (score == best_score and (time < best_time or (time == best_time and head[1] < best_member)))
      if better then best_lane, best_member, best_score, best_time = l, head[1], score, time end
    end
  end
  return best_lane, best_member, best_score
end

-- Budget came back: tell the sidecar of each lane's first ticket, so that it asks again now.
local function wake_heads(prefix)
  for l = 1, lane_count do
    local head = redis.call('ZRANGE', line_key(l), 0, 0)
    if #head > 0 then
      local ticket = parse_ticket(head[1])
      redis.call('PUBLISH', channel_of(prefix, ticket.id), 'w|' .. ticket.id)
    end
  end
end

-- Every key of the line lives at least `ms` more.
local function keep_line_for(ms)
  for k = DUE, line_at + 2 + lane_count do
    if redis.call('PTTL', KEYS[k]) < ms then redis.call('PEXPIRE', KEYS[k], ms) end
  end
end

-- Keys the line wrote after its tickets joined (served verdicts, lane times) live as long as
-- its tickets: a key never outlives them without a TTL.
local function keep_line_written()
  local ttl = redis.call('PTTL', KEYS[DUE])
  if ttl < 0 then ttl = 1000 end
  for k = SERVED, LANES do
    if redis.call('PTTL', KEYS[k]) == -1 then redis.call('PEXPIRE', KEYS[k], ttl) end
  end
end
