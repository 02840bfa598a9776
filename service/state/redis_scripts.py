"""The server-side scripts of the Redis store: each runs in one round trip, atomically."""

from __future__ import annotations

# KEYS: pause flags, revocations, budget windows, then (when ARGV says so) the subject
# whose latest sign-in to take, the subject whose sign-in to remember, the session whose
# first sight is its sign-in, the audit stream.
# ARGV: now, #pauses, #revocations, signed-in time ("" for none), #windows, cost,
# (amount, seconds) per window, then take-sign-in (0/1), remember-sign-in (0/1), how
# long a sign-in (and a session) is remembered, record ("" for none), stream MINID,
# stream MAXLEN, session (0/1; absent is 0).
# Returns {0} admitted; {1, index, reason} paused; {2, index} revoked;
# {3, index, seconds until room} rate limited (index of the refusing window).
ADMIT = """
local now = tonumber(ARGV[1])
local pauses, revocations = tonumber(ARGV[2]), tonumber(ARGV[3])
local signed_in, windows, cost = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local after = 7 + 2 * windows
local take_sign_in, remember_sign_in = ARGV[after] == '1', ARGV[after + 1] == '1'
local key = 1 + pauses + revocations + windows
local sign_in_key, remember_key, session_key, stream_key
if take_sign_in then sign_in_key = KEYS[key]; key = key + 1 end
if remember_sign_in then remember_key = KEYS[key]; key = key + 1 end
if ARGV[after + 6] == '1' then session_key = KEYS[key]; key = key + 1 end
stream_key = KEYS[key]
if sign_in_key then signed_in = redis.call('GET', sign_in_key) or '' end
if session_key and signed_in ~= '' then
  redis.call('SET', session_key, signed_in, 'NX', 'EX', ARGV[after + 2])
  local first = redis.call('GET', session_key)
  if first and tonumber(first) < tonumber(signed_in) then signed_in = first end
end
key = 1
for i = 1, pauses do
  local reason = redis.call('HGET', KEYS[key], 'reason')
  if reason then return {1, i, reason} end
  key = key + 1
end
for i = 1, revocations do
  local at = redis.call('GET', KEYS[key])
  if at and (signed_in == '' or tonumber(signed_in) <= tonumber(at)) then return {2, i} end
  key = key + 1
end
local first_window = key
for i = 1, windows do
  local amount, seconds = tonumber(ARGV[5 + 2 * i]), tonumber(ARGV[6 + 2 * i])
  if cost > amount then return {3, i, seconds} end
  local oldest = redis.call('LINDEX', KEYS[key], amount - cost)
  if oldest and tonumber(oldest) > now - seconds then
    return {3, i, math.max(1, math.ceil(tonumber(oldest) + seconds - now))}
  end
  key = key + 1
end
key = first_window
for i = 1, windows do
  local amount, seconds = tonumber(ARGV[5 + 2 * i]), tonumber(ARGV[6 + 2 * i])
  for _ = 1, cost do redis.call('LPUSH', KEYS[key], ARGV[1]) end
  redis.call('LTRIM', KEYS[key], 0, amount - 1)
  redis.call('EXPIRE', KEYS[key], seconds)
  key = key + 1
end
if remember_key then
  local known = redis.call('GET', remember_key)
  if not known or tonumber(known) < tonumber(signed_in) then
    redis.call('SET', remember_key, signed_in, 'EX', ARGV[after + 2])
  end
end
local record = ARGV[after + 3]
if record ~= '' then
  -- The entry's ID is the record's time (the injected clock's), so that retention by
  -- MINID and reading "since" go by the same clock; Redis's own clock, for an ID no
  -- later than the stream's last (a clock behind another instance's) or before 7.0.
  local id = string.format('%.0f-*', math.floor(now * 1000))
  local added = redis.pcall('XADD', stream_key, 'MINID', '~', ARGV[after + 4], id, 'record', record)
  if type(added) == 'table' and added.err then
    redis.call('XADD', stream_key, 'MINID', '~', ARGV[after + 4], '*', 'record', record)
  end
  redis.call('XTRIM', stream_key, 'MAXLEN', '~', ARGV[after + 5])
end
return {0}
"""

# KEYS: the index of minute hashes (score: minute), their field counts. ARGV: the
# minute-hash prefix, the oldest minute kept, the most fields kept, then (minute,
# field, count) triples. Old minutes go first; then the oldest until within the size.
COUNT_REFUSALS = """
local index, sizes = KEYS[1], KEYS[2]
local prefix, oldest, most = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 4, #ARGV, 3 do
  local hash = prefix .. ARGV[i]
  if redis.call('HINCRBY', hash, ARGV[i + 1], ARGV[i + 2]) == tonumber(ARGV[i + 2]) then
    redis.call('ZADD', index, tonumber(ARGV[i]), hash)
    redis.call('HINCRBY', sizes, hash, 1)
    redis.call('HINCRBY', sizes, '*', 1)
  end
end
local function drop(hash)
  redis.call('HINCRBY', sizes, '*', -tonumber(redis.call('HGET', sizes, hash) or '0'))
  redis.call('HDEL', sizes, hash)
  redis.call('ZREM', index, hash)
  redis.call('DEL', hash)
end
for _, hash in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. oldest)) do
  drop(hash)
end
while tonumber(redis.call('HGET', sizes, '*') or '0') > most do
  local first = redis.call('ZRANGE', index, 0, 0)
  if #first == 0 then break end
  drop(first[1])
end
return 0
"""


# KEYS: windows of one slot that a refused admission spent. ARGV: the time pushed, how
# many times. The entries come out again; any trimmed for them were past their windows.
REFUND = """
for _, key in ipairs(KEYS) do
  redis.call('LREM', key, tonumber(ARGV[2]), ARGV[1])
end
return 0
"""


# KEYS: what a request is known by. ARGV: how long to remember them. Returns 0 when any
# was remembered already (a replay), else remembers them all and returns 1.
FIRST_TIME = """
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then return 0 end
end
for _, key in ipairs(KEYS) do
  redis.call('SET', key, '1', 'EX', ARGV[1])
end
return 1
"""

# KEYS: a mark. ARGV: now. Returns when the mark was first set (now, if this is the time).
FIRST_SEEN = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"""
