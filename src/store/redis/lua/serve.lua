-- serve.lua: serving a scope's line, shared by wait.lua and acquire.lua (prepended after
-- line.lua): whichever call finds the first ticket fits serves it, so the line moves on any call
-- to its scope, a waiting request's or not. Needs limits.lua (check_limits) and line.lua.

-- A served ticket's verdict stays this long for a sidecar whose message was lost to collect.
local SERVED_KEEP_MS = 2000
-- Tickets served by one call at most: the script stays short; the next first in line is told.
local MAX_SERVED = 64

local function verdict_of(r)
  local retry = -1
  if r.retry ~= NEVER then retry = math.ceil(r.retry) end
  return r.decider .. '|' .. r.remaining .. '|' .. retry .. '|' .. math.ceil(r.reset) .. '|' .. math.floor(now) .. '|' .. (r.reserved and 1 or 0)
end

-- Each lane's share from ARGV[at + 1] on, when the scope's line has more than one lane; nil else.
local function lane_shares(at)
  if lane_count <= 1 then return nil end
  local shares = {}
  for l = 1, lane_count do shares[l] = tonumber(ARGV[at + l]) end
  return shares
end

-- Serves the line in order while its first ticket fits. Returns the caller's outcome (nil, or
-- state and verdict), and the ticket left first in line with ms until it fits.
local function serve_line(caller, prefix, shares)
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

-- After serving: the sidecar of a ticket that became first in line (not the caller's) is told
-- when it fits; the lanes' times are forgotten once nobody waits; written keys get a TTL.
local function after_serving(first, first_before, caller, turn, prefix)
  if first ~= nil and first ~= first_before and first ~= caller then
    local ticket = parse_ticket(first)
    redis.call('PUBLISH', channel_of(prefix, ticket.id), 't|' .. ticket.id .. '|' .. math.ceil(turn))
  end
  keep_line_written()
  if waiting_count() == 0 then redis.call('DEL', KEYS[LANES]) end
end
