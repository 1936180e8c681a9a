-- wait.lua: a request that may wait joins its scope's line; whoever is first in line is served as
-- soon as the limits let it go, by whichever call finds it so. Every call (join, try, leave)
-- serves the line before it answers, and tells the sidecars of the tickets it served.
--
-- KEYS     the limits' keys (limits.lua), then the line's keys (line.lua): due, served, lanes,
--          then one line per lane
-- ARGV[1]  op: join, try (ask again; collect a verdict served while the message was lost) or
--          leave (give up: a ticket served meanwhile is answered so that it can be given back)
-- ARGV[2]  join: "<id>|<priority>|<cost>|<usable>|<lane>|<permit>"; try and leave: the ticket
--          join answered
-- ARGV[3]  join: ms the ticket may wait before it is dropped
-- ARGV[4 .. 4+4n]  the limits (limits.lua)
-- ARGV[5+4n]  max waiters in the scope, across every sidecar (join)
-- ARGV[6+4n]  channel prefix (line.lua); a line that forms is told on <prefix>formed, with
--          the scope as the message
-- ARGV[7+4n]  the scope
-- ARGV[8+4n .. 7+4n+L]  each lane's share, when the resource has lanes
-- Returns  {state, decider, remaining, retry_ms (-1 never), reset_ms, now_ms, reserved 0|1,
--           turn_ms, ticket, waiting}
--          state 1 granted, 0 waiting, 2 the line is full, 3 never (the cost can never fit),
--          4 gone (the ticket is not in line: dropped, or left)
--          turn_ms: when waiting and first in line, ms until its units fall due (-1: unknown,
--          the sidecar hears when); ticket: the member to ask again with; waiting: tickets in line
-- Loaded after prelude.lua, limits.lua, line.lua and serve.lua.

local op = ARGV[1]
local prefix = ARGV[6 + 4 * n]
use_line(limit_keys + 1, #KEYS - limit_keys - 3)
local shares = lane_shares(7 + 4 * n)

local function reply(state, verdict, turn, ticket)
  local decider, remaining, retry, reset, at, held = string.match(verdict or '0|0|-1|0|0|0', '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)$')
  return {state, tonumber(decider), tonumber(remaining), tonumber(retry), tonumber(reset), math.floor(now), tonumber(held),
    turn or -1, ticket or '', waiting_count()}
end

-- The ticket's lane starts waiting: it joins the others at the least served of them, so that a
-- lane that was idle takes its share from now on, not what it left to the others before.
local function activate(lane)
  if not shares or redis.call('ZCARD', line_key(lane)) > 0 then return end
  local least
  for l = 1, lane_count do
    if l ~= lane and redis.call('ZCARD', line_key(l)) > 0 then
      local time = tonumber(redis.call('HGET', KEYS[LANES], l)) or 0
      if least == nil or time < least then least = time end
    end
  end
  local own = tonumber(redis.call('HGET', KEYS[LANES], lane)) or 0
  if least and least > own then redis.call('HSET', KEYS[LANES], lane, string.format('%.17g', least)) end
end

prune()
local _, first_before = first_in_line(shares)
local caller = ''

if op == 'join' then
  local id, priority, cost, use, lane, held = string.match(ARGV[2], '^([^|]*)|([^|]*)|(%d+)|([^|]*)|(%d+)|(.*)$')
  lane = tonumber(lane)
  usable, permit = tonumber(use), held
  local r = check_limits(tonumber(cost), nil)
  if not r.granted and r.retry == NEVER then return reply(3, verdict_of(r)) end
  if r.granted and first_before == nil then
    commit_limits(r)
    return reply(1, verdict_of(r))
  end
  caller = string.format('%016d', math.floor(now * 1000)) .. '|' .. id .. '|' .. cost .. '|' .. use .. '|' .. lane .. '|' .. held
  local wait_ms = tonumber(ARGV[3])
  activate(lane)
  redis.call('ZADD', line_key(lane), -tonumber(priority), caller)
  redis.call('ZADD', KEYS[DUE], now + wait_ms, caller)
  keep_line_for(math.ceil(wait_ms) + SERVED_KEEP_MS + 1000)
else
  caller = ARGV[2]
  local ticket = parse_ticket(caller)
  if not ticket.id then return reply(4) end
  local verdict = redis.call('HGET', KEYS[SERVED], ticket.id)
  if verdict then
    redis.call('HDEL', KEYS[SERVED], ticket.id)
    redis.call('ZREM', KEYS[DUE], caller)
    return reply(1, verdict)
  end
  if ticket.lane < 1 or ticket.lane > lane_count or not redis.call('ZSCORE', line_key(ticket.lane), caller) then return reply(4) end
  if op == 'leave' then
    redis.call('ZREM', line_key(ticket.lane), caller)
    redis.call('ZREM', KEYS[DUE], caller)
    caller = ''
  end
end

local outcome, first, turn = serve_line(caller, prefix, shares)
after_serving(first, first_before, caller, turn, prefix)
if op == 'leave' then return reply(4) end
if outcome then return reply(outcome[1], outcome[2]) end
if op == 'join' and waiting_count() > tonumber(ARGV[5 + 4 * n]) then
  local ticket = parse_ticket(caller)
  redis.call('ZREM', line_key(ticket.lane), caller)
  redis.call('ZREM', KEYS[DUE], caller)
  return reply(2)
end
-- A line formed: leases of this scope stop serving ahead of it (src/lease/leases.ts).
if first_before == nil then redis.call('PUBLISH', prefix .. 'formed', ARGV[7 + 4 * n]) end
local own_turn = -1
if first == caller then own_turn = math.ceil(turn) end
return reply(0, nil, own_turn, caller)
