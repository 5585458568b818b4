#!lua
-- One view's rows written into many entity hashes, each atomically: newest wins, then expiry.
-- Touches only KEYS, which on Redis Cluster share one slot (the caller groups them).
-- The shebang makes Redis refuse the whole call up front when it is out of memory
-- (nothing half written), instead of failing at its first write.
--
-- Every row of a call has the same fields (the caller groups rows by them), so field names
-- come once per call, and event times are compared as fixed-width digit strings: per-row
-- argument strings and tonumber() calls cost Redis more than the HSET they guard.
--
-- ARGV[1]  mode: "b" batch (key-level PEXPIRE), "s" stream (per-field expiry), or "l" like
--          stream but the last write wins whatever its event time (Feast's label views)
-- ARGV[2]  TTL in milliseconds, "0" for none
-- ARGV[3]  largest allowed lead of an event time over the server clock, in microseconds;
--          "" for no bound
-- ARGV[4]  flags: "n" when event times must be compared as numbers (one is not 16 digits);
--          "x" when expiring stream fields are set with HSETEX (one command), else with
--          HSET + HPEXPIREAT. The caller chooses by what the server supports (HELLO at
--          start-up): REDIS_VERSION_NUM cannot tell, Valkey 9 reports 7.2.4 there.
-- ARGV[5]  s, the fields set per row, the event-time field "_ts:<view>" first
-- ARGV[6]  d, the fields deleted per row (their new value is null)
-- ARGV[7 .. 6+s]      the fields set
-- ARGV[7+s .. 6+s+d]  the fields deleted
-- then one record per key, in KEYS order:
--   stream rows with a TTL only: event time + TTL in epoch ms (13 digits unless "n")
--   event time in epoch microseconds (16 digits unless "n"), then the other s - 1 values
--
-- Returns one code per key: 1 written, 0 skipped (older than the stored event time),
-- 2 skipped (a stream row whose expiry min(event, now) + ttl is already past),
-- 3 skipped (event time too far ahead of the server clock), or an error for that key.
-- Locals, not globals: each global read is a table lookup, and ARGV is read per value.
local KEYS, ARGV = KEYS, ARGV
local stream = ARGV[1] ~= 'b'
local newest_wins = ARGV[1] ~= 'l'
local ttl = ARGV[2]
local numeric = string.find(ARGV[4], 'n', 1, true) ~= nil
local hsetex = string.find(ARGV[4], 'x', 1, true) ~= nil
local s = tonumber(ARGV[5])
local d = tonumber(ARGV[6])
local expiring = stream and ttl ~= '0'
local ts_field = ARGV[7]
local deleted = {}
for f = 1, d do
  deleted[f] = ARGV[6 + s + f]
end

-- HSET's arguments, reused row after row: fields stay, values are replaced.
local set_args = {}
local fields = {}
for f = 1, s do
  set_args[2 * f - 1] = ARGV[6 + f]
  fields[f] = ARGV[6 + f]
end

local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local now_ms = math.floor(now_us / 1000)
local now_ms_text = string.format('%013d', now_ms)
local cap_text = string.format('%013d', now_ms + tonumber(ttl))
local latest_text = nil
if ARGV[3] ~= '' then
  latest_text = string.format('%016d', now_us + tonumber(ARGV[3]))
end

-- a < b for event times given as digit strings. A stored value of another width (ISO
-- text written by versions before 0.2) is older than anything.
local function older(a, b)
  local x, y = tonumber(a), tonumber(b)
  if not x or not y then
    return not x
  end
  return x < y
end

local call, pcall_, unpack = redis.call, redis.pcall, unpack
local key_ttl = not stream and ttl ~= '0'
local codes = {}
local p = 7 + s + d
for i = 1, #KEYS do
  local key = KEYS[i]
  local expire_at = nil
  if expiring then
    expire_at = ARGV[p]
    p = p + 1
  end
  local ts = ARGV[p]
  for f = 2, 2 * s, 2 do
    set_args[f] = ARGV[p]
    p = p + 1
  end

  local code = 1
  if numeric then
    if latest_text and older(latest_text, ts) then
      code = 3
    elseif expire_at and not older(now_ms_text, expire_at) then
      code = 2
    end
  elseif latest_text and latest_text < ts then
    code = 3
  elseif expire_at and expire_at <= now_ms_text then
    code = 2
  end
  if code == 1 and newest_wins then
    local stored = pcall_('HGET', key, ts_field)
    if stored then
      -- the common case first: a stored time of the same width. An error reply is a
      -- table, whose length is 0, so it never takes this branch.
      if not numeric and #stored == #ts then
        if ts < stored then
          code = 0
        end
      elseif stored.err then
        code = {err = stored.err .. ' (key ' .. key .. ')'}
      elseif older(ts, stored) then
        code = 0
      end
    end
  end

  if code == 1 then
    if expire_at then
      if numeric and older(cap_text, expire_at) or not numeric and cap_text < expire_at then
        expire_at = cap_text
      end
      if hsetex then
        local set = call('HSETEX', key, 'PXAT', expire_at, 'FIELDS', s, unpack(set_args))
        if set ~= 1 then
          code = {err = 'HEXPIRE_FAILED HSETEX PXAT ' .. expire_at .. ' on key ' .. key
            .. ' answered ' .. tostring(set) .. ' (expected 1)'}
        end
      else
        call('HSET', key, unpack(set_args))
        local replies = call('HPEXPIREAT', key, expire_at, 'FIELDS', s, unpack(fields))
        for f = 1, #replies do
          if replies[f] ~= 1 and code == 1 then
            code = {err = 'HEXPIRE_FAILED HPEXPIREAT ' .. expire_at .. ' on key ' .. key .. ' field '
              .. fields[f] .. ' answered ' .. tostring(replies[f]) .. ' (expected 1)'}
          end
        end
      end
    else
      call('HSET', key, unpack(set_args))
      if key_ttl then
        call('PEXPIRE', key, ttl)
      end
    end
    if d > 0 then
      call('HDEL', key, unpack(deleted))
    end
  end
  codes[i] = code
end
return codes
