-- POST a different body on each request, cycling through a file of bodies (one per line), so
-- that what the server sees (and captures, and compresses) varies as real traffic does.
-- Everything else (headers, Server-Timing sums, the JSON summary) is post.lua's.
--
-- usage: wrk -s bench/wrk/rows.lua URL -- BODIES_FILE [CONTENT_TYPE]

local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "post.lua")

local post_init = init
local requests = {}
local next_request = 0

function init(args)
  post_init(args)
  for line in string.gmatch(wrk.body, "[^\n]+") do
    table.insert(requests, wrk.format(nil, nil, nil, line))
  end
  assert(#requests > 0, "no bodies in " .. tostring(args[1]))
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end
