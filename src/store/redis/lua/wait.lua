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
-- Loaded after prelude.lua, limits.lua and line.lua.

-- A served ticket's verdict stays this long for a sidecar whose message was lost to collect.
local SERVED_KEEP_MS = 2000
-- Tickets served by one call at most: the script stays short; the next first in line is told.
local MAX_SERVED = 64

local op = ARGV[1]
local prefix = ARGV[6 + 4 * n]
use_line(limit_keys + 1, #KEYS - limit_keys - 3)
local shares = nil
if lane_count > 1 then
  shares = {}
  for l = 1, lane_count do shares[l] = tonumber(ARGV[7 + 4 * n + l]) end
end

local function verdict_of(r)
  local retry = -1
  if r.retry ~= NEVER then retry = math.ceil(r.retry) end
  return r.decider .. '|' .. r.remaining .. '|' .. retry .. '|' .. math.ceil(r.reset) .. '|' .. math.floor(now) .. '|' .. (r.reserved and 1 or 0)
end

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

-- Serves the line in order while its first ticket fits. Returns the caller's outcome (nil, or
-- state and verdict), and the ticket left first in line with ms until it fits.
local function serve(caller)
  local outcome
  for _ = 1, MAX_SERVED do
    local lane, member = first_in_line(shares)
    if not lane then return outcome end
    local ticket = parse_ticket(member)
    usable, permit = ticket.usable, ticket.permit
    local r = check_limits(ticket.cost, nil)
    if not r.granted and r.retry ~= NEVER then return outcome, member, r.retry end
    redis.call('ZREM', line_key(lane), member)
    local verdict = verdict_of(r)
    if r.granted then
      commit_limits(r)
      if shares then redis.call('HINCRBYFLOAT', KEYS[LANES], lane, ticket.cost / shares[lane]) end
    end
    if member == caller then
      outcome = {r.granted and 1 or 3, verdict}
      redis.call('ZREM', KEYS[DUE], member)
    elseif r.granted then
      redis.call('HSET', KEYS[SERVED], ticket.id, verdict)
      redis.call('ZADD', KEYS[DUE], now + SERVED_KEEP_MS, member)
      redis.call('PUBLISH', channel_of(prefix, ticket.id), 's|' .. ticket.id .. '|' .. verdict)
    else
      redis.call('ZREM', KEYS[DUE], member)
      redis.call('PUBLISH', channel_of(prefix, ticket.id), 'n|' .. ticket.id .. '|' .. verdict)
    end
  end
  local _, member = first_in_line(shares)
  return outcome, member, 0
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

local outcome, first, turn = serve(caller)
keep_line_written()
if first ~= nil and first ~= first_before and first ~= caller then
  local ticket = parse_ticket(first)
  redis.call('PUBLISH', channel_of(prefix, ticket.id), 't|' .. ticket.id .. '|' .. math.ceil(turn))
end
if waiting_count() == 0 then redis.call('DEL', KEYS[LANES]) end
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
