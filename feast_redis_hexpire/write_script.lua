#!lua
-- One view's rows written into many entity hashes, each atomically: newest wins, then expiry.
-- Touches only KEYS, which on Redis Cluster share one slot (the caller groups them).
-- The shebang makes Redis refuse the whole call up front when it is out of memory
-- (nothing half written), instead of failing at the first write.
--
-- ARGV[1]  mode: "b" batch (key-level PEXPIRE) or "s" stream (per-field expiry)
-- ARGV[2]  TTL in milliseconds, 0 for none
-- ARGV[3]  largest allowed lead of an event time over the server clock, in microseconds;
--          "" for no bound
-- then one record per key, in KEYS order:
--   n      the number of field/value pairs, the event-time pair first
--   d      the number of fields to delete (their new value is null)
--   "_ts:<view>", event time in epoch microseconds, field, value, ... (n pairs)
--   field ... (d fields)
--
-- Returns one code per key: 1 written, 0 skipped (older than the stored event time),
-- 2 skipped (a stream row whose expiry min(event, now) + ttl is already past),
-- 3 skipped (event time too far ahead of the server clock), or an error for that key.
local stream = ARGV[1] == 's'
local ttl_ms = tonumber(ARGV[2])
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local now_ms = math.floor(now_us / 1000)
local latest_us = nil
if ARGV[3] ~= '' then
  latest_us = now_us + tonumber(ARGV[3])
end
local hsetex = redis.REDIS_VERSION_NUM >= 0x080000

local codes = {}
local p = 4
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[p])
  local d = tonumber(ARGV[p + 1])
  local first = p + 2
  local last_pair = first + 2 * n - 1
  local ts_field = ARGV[first]
  local ts = tonumber(ARGV[first + 1])
  p = last_pair + d + 1

  local code = 1
  if latest_us and ts > latest_us then
    code = 3
  else
    local stored = redis.pcall('HGET', key, ts_field)
    if type(stored) == 'table' and stored.err then
      code = {err = stored.err .. ' (key ' .. key .. ')'}
    elseif stored and ts < (tonumber(stored) or -math.huge) then
      code = 0
    end
  end

  if code == 1 then
    local expire_at = 0
    if stream and ttl_ms > 0 then
      expire_at = math.min(math.floor(ts / 1000), now_ms) + ttl_ms
      if expire_at <= now_ms then
        code = 2
      end
    end
    if code == 1 then
      if expire_at > 0 and hsetex then
        local set = redis.call('HSETEX', key, 'PXAT', expire_at, 'FIELDS', n, unpack(ARGV, first, last_pair))
        if set ~= 1 then
          code = {err = 'HEXPIRE_FAILED HSETEX PXAT ' .. expire_at .. ' on key ' .. key
            .. ' answered ' .. tostring(set) .. ' (expected 1)'}
        end
      else
        redis.call('HSET', key, unpack(ARGV, first, last_pair))
        if expire_at > 0 then
          local fields = {}
          for f = first, last_pair, 2 do
            fields[#fields + 1] = ARGV[f]
          end
          local replies = redis.call('HPEXPIREAT', key, expire_at, 'FIELDS', n, unpack(fields))
          for f, reply in ipairs(replies) do
            if reply ~= 1 and code == 1 then
              code = {err = 'HEXPIRE_FAILED HPEXPIREAT ' .. expire_at .. ' on key ' .. key .. ' field '
                .. fields[f] .. ' answered ' .. tostring(reply) .. ' (expected 1)'}
            end
          end
        elseif not stream and ttl_ms > 0 then
          redis.call('PEXPIRE', key, ttl_ms)
        end
      end
      if d > 0 then
        redis.call('HDEL', key, unpack(ARGV, last_pair + 1, last_pair + d))
      end
    end
  end
  codes[i] = code
end
return codes
