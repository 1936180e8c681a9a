-- inspect.lua: one scope as it is, charging nothing and serving nobody: what a request could take
-- from each limit now, and how many tickets wait in the scope's line.
--
-- KEYS     the limits' keys (limits.lua), then the line's keys (line.lua)
-- ARGV[1 .. 3]  unused (every script that checks limits lays them out from ARGV[4])
-- ARGV[4 .. 4+4n]  the limits (limits.lua)
-- Returns  {now_ms, waiting, then per limit: remaining, reset_after_ms}
--          remaining as a request that may use all of the limit sees it (the reserve included).
-- Like any call it drops what has expired (held permits past their ttl, tickets past their
-- wait), which changes nothing a request could see; it writes nothing else.
-- Loaded after prelude.lua, limits.lua and line.lua.

use_line(limit_keys + 1, #KEYS - limit_keys - 3)
prune()
local result = check_limits(0, nil)
local reply = {math.floor(now), waiting_count()}
for i = 1, n do
  reply[#reply + 1] = result.left[i]
  reply[#reply + 1] = math.max(0, math.ceil(result.resets[i]))
end
return reply
