-- Write one view's row into one entity hash, atomically: newest wins, then expiry.
-- Touches KEYS[1] only, so it runs unchanged on Redis Cluster.
--
-- ARGV[1]  mode: "b" batch (key-level PEXPIRE) or "s" stream (per-field HPEXPIREAT)
-- ARGV[2]  the view's event-timestamp field, "_ts:<view>"
-- ARGV[3]  event timestamp, fixed-width ISO-8601 UTC text (compares correctly as text)
-- ARGV[4]  TTL in milliseconds, 0 for none
-- ARGV[5]  event time in epoch milliseconds (anchors stream expiry)
-- ARGV[6]  n, the number of field/value pairs to set
-- ARGV[7 .. 6+2n]  field, value, field, value ...
-- ARGV[7+2n ..]    fields whose new value is null: deleted in the same write
--
-- Returns 1 written, 0 skipped (older than the stored event timestamp),
-- 2 skipped (a stream row whose expiry min(event, now) + ttl is already past).
local key = KEYS[1]
local ts_field = ARGV[2]
local ts = ARGV[3]

local stored = redis.call('HGET', key, ts_field)
if stored and ts < stored then
  return 0
end

local stream = ARGV[1] == 's'
local ttl_ms = tonumber(ARGV[4])
local n = tonumber(ARGV[6])
local expire_at = 0
if stream and ttl_ms > 0 then
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  expire_at = math.min(tonumber(ARGV[5]), now_ms) + ttl_ms
  if expire_at <= now_ms then
    return 2
  end
end

redis.call('HSET', key, ts_field, ts, unpack(ARGV, 7, 6 + 2 * n))
local first_deleted = 7 + 2 * n
if #ARGV >= first_deleted then
  redis.call('HDEL', key, unpack(ARGV, first_deleted))
end

if stream then
  if ttl_ms > 0 then
    local fields = {ts_field}
    for i = 7, 5 + 2 * n, 2 do
      fields[#fields + 1] = ARGV[i]
    end
    local codes = redis.call('HPEXPIREAT', key, expire_at, 'FIELDS', #fields, unpack(fields))
    for i, code in ipairs(codes) do
      if code ~= 1 then
        return redis.error_reply('HEXPIRE_FAILED HPEXPIREAT on key ' .. key .. ' field ' .. fields[i]
          .. ' answered ' .. tostring(code) .. ' (expected 1)')
      end
    end
  end
elseif ttl_ms > 0 then
  redis.call('PEXPIRE', key, ttl_ms)
end
return 1
