"""The Lua script of the Redis transport's crash-safe fetch (``redis_fetch``): take up to a batch
of messages and record each as unacknowledged, in kombu's own structures and formats, in one
atomic step.

It records before it trims the list: should it ever stop half way (Redis does not undo a
script's writes), every message would be queued or recorded, at worst both (delivered twice),
never neither. ``tests/test_redis_transport.py`` checks its records against what kombu's
``QoS.append`` writes for the same messages.
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["FETCH", "FETCH_SHA", "MAX_FETCH_LIMIT", "PRIVATE_NAMES"]

#: Nothing of kombu's is imported here: the key names and formats the script writes are kombu's
#: (checked against kombu itself on a live Redis), not its Python names.
PRIVATE_NAMES: list[tuple[Any, str]] = []

#: Takes up to ARGV[1] messages from the lists KEYS[3..] (in that order, oldest first) and
#: records each as kombu's ``QoS.append`` does, in the same atomic step: in the hash KEYS[1]
#: (``unacked``) the delivery tag -> ``[message, exchange, routing_key]`` as JSON, and in the
#: sorted set KEYS[2] (``unacked_index``) the delivery tag scored ARGV[2] (the client's clock,
#: as kombu's). ARGV[3] has one character per list: ``1`` records, ``0`` does not (a queue
#: consumed with ``no_ack``, which kombu never records either). Returns, per message, the
#: 1-based position of its list among KEYS[3..] (0: not a kombu message, taken off the list
#: and not recorded) and the message as it was queued.
FETCH = """
local function envelope(item)
  local message = cjson.decode(item)
  local properties = message['properties']
  local info = properties['delivery_info']
  return properties['delivery_tag'], info['exchange'], info['routing_key']
end

local limit = tonumber(ARGV[1])
local out = {}
local taken = 0
for i = 3, #KEYS do
  if taken >= limit then
    break
  end
  local key = KEYS[i]
  local items = redis.call('LRANGE', key, -(limit - taken), -1)
  local n = #items
  if n > 0 then
    local position = i - 2
    local record = string.sub(ARGV[3], position, position) == '1'
    local scores, fields = {}, {}
    for j = n, 1, -1 do
      local item = items[j]
      local at = position
      if record then
        local ok, tag, exchange, routing_key = pcall(envelope, item)
        if ok and type(tag) == 'string' then
          scores[#scores + 1] = ARGV[2]
          scores[#scores + 1] = tag
          fields[#fields + 1] = tag
          fields[#fields + 1] = '[' .. item .. ', ' .. cjson.encode(exchange) .. ', '
            .. cjson.encode(routing_key) .. ']'
        else
          at = 0
        end
      end
      out[#out + 1] = at
      out[#out + 1] = item
    end
    if #fields > 0 then
      redis.call('ZADD', KEYS[2], unpack(scores))
      redis.call('HSET', KEYS[1], unpack(fields))
    end
    redis.call('LTRIM', key, 0, -(n + 1))
    taken = taken + n
  end
end
return out
"""
FETCH_SHA = hashlib.sha1(FETCH.encode(), usedforsecurity=False).hexdigest()

#: Most messages one fetch may take (ARGV of the script; Lua's ``unpack`` has limits).
MAX_FETCH_LIMIT = 1000
