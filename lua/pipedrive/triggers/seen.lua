--- The seen memory: which events were handled (de-duplication) and which
-- callbacks of a failed event already succeeded. A bounded memory with expiry,
-- and the default `seen` store built on it.
local core = require "pipedrive.core"

local M = {}

local Memory = {}
Memory.__index = Memory

-- Entries live in three parallel rings (key, expiry, value) indexed by an
-- insertion counter: slot = (i - 1) % cap + 1, entries from `head` to `tail`.
-- `items[key]` is the counter of the key's latest insertion; an older one in
-- the rings is dead. No table per entry: a full memory of 10,000 events is
-- 10,000 strings for the garbage collector, not 30,000 objects, which keeps
-- its pauses short in a busy listener. Dead entries are at most
-- 2 * count + 64 (trim compacts beyond), so the rings never wrap onto live ones.
function M.memory(max, clock)
  return setmetatable({ max = max, clock = clock or core.now, items = {}, keys = {}, expires = {}, values = {},
                        head = 1, tail = 0, count = 0, cap = 2 * max + 66 }, Memory)
end

function Memory:get(key)
  local i = self.items[key]
  if not i then return nil end
  local slot = (i - 1) % self.cap + 1
  if self.expires[slot] <= self.clock() then
    self:delete(key)
    return nil
  end
  return self.values[slot]
end

function Memory:delete(key)
  if self.items[key] then
    self.items[key] = nil
    self.count = self.count - 1
  end
end

-- Drops expired entries from the front and the oldest ones beyond `max`; the
-- rings are compacted when deleted keys make them much longer than the live
-- entries.
function Memory:trim(now)
  local items, keys, expires, values, cap = self.items, self.keys, self.expires, self.values, self.cap
  while self.head <= self.tail do
    local i = self.head
    local slot = (i - 1) % cap + 1
    local key = keys[slot]
    local live = items[key] == i
    if live and self.count <= self.max and expires[slot] > now then break end
    if live then
      items[key] = nil
      self.count = self.count - 1
    end
    keys[slot], values[slot] = false, false
    self.head = i + 1
  end
  if self.tail - self.head + 1 > 2 * self.count + 64 then
    local k2, e2, v2, n = {}, {}, {}, 0
    for i = self.head, self.tail do
      local slot = (i - 1) % cap + 1
      local key = keys[slot]
      if items[key] == i then
        n = n + 1
        k2[n], e2[n], v2[n] = key, expires[slot], values[slot]
        items[key] = n
      end
    end
    self.keys, self.expires, self.values, self.head, self.tail = k2, e2, v2, 1, n
  end
end

function Memory:set(key, v, ttl)
  local now = self.clock()
  if not self.items[key] then self.count = self.count + 1 end
  local i = self.tail + 1
  local slot = (i - 1) % self.cap + 1
  self.tail = i
  self.items[key] = i
  self.keys[slot], self.expires[slot], self.values[slot] = key, now + ttl, v
  self:trim(now)
end

function Memory:size()
  self:trim(self.clock())
  return self.count
end

--- The default `seen` store of a triggers object: { check, mark } over a memory.
function M.store(memory)
  return {
    check = function(key) return memory:get(key) ~= nil end,
    mark = function(key, ttl) memory:set(key, true, ttl) end,
  }
end

return M
