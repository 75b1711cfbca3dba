--- `each`: lazy pages of a list as a generic-for iterator, by cursor (v2) or
-- offset (v1) as the operation's route says (any operation with paging
-- "cursor" or "offset", whatever its name; or a raw GET path through
-- pd.request, paged as its API version does), with `max_items` and
-- `prefetch` (the next page's call runs as a scheduler task while the caller
-- works on this page). A failed page raises the error object (as io.lines
-- does): ending the loop silently would lose data.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"
local params = require "pipedrive.params"
local retry = require "pipedrive.retry"

local M = {}

local Pager = {}
Pager.__index = Pager

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local function decode_error(message, path)
  return setmetatable({ kind = "decode", message = message, path = path }, core.error_mt)
end

-- The next page's answer: the prefetched one, or a call now.
function Pager:fetch()
  local pending = self.pending
  if pending then
    local r = self.sched.wait(pending)
    self.pending = nil
    if not r[1] then error(r[2], 0) end
    return r[2], r[3]
  end
  return self.caller(self.args)
end

-- Starts the next page's call as a task (not inside a parallel task, where the
-- call itself already lets the other tasks run, nor when max_items is reached).
function Pager:start_prefetch(walked)
  local sched = self.sched
  if sched.current() or (self.max_items and walked >= self.max_items) then return end
  local caller, snapshot = self.caller, copy(self.args)
  self.pending = sched.spawn(function() return caller(snapshot) end)
  sched.step(0) -- sends the request now
end

--- Drops a prefetch still running (a loop that broke early).
function Pager:drop()
  if self.pending then self.sched.cancel(self.pending) end
  self.pending = nil
end

-- Moves the position past the page just fetched; raises when the answer
-- announces more items without a way to get them.
function Pager:advance(info)
  local a, paging = self.args, self.paging
  if paging == "none" or not info.more then
    self.done = true
  elseif paging == "cursor" then
    if not info.next_cursor or info.next_cursor == a.cursor then
      error(decode_error("more items announced without a new cursor", self.path), 3)
    end
    a.cursor = info.next_cursor
  else
    local next_start = info.next_start
    if compat.math_type(next_start) ~= "integer" or next_start <= (a.start or 0) then
      error(decode_error("more items announced without a next_start beyond " .. tostring(a.start or 0), self.path), 3)
    end
    a.start = next_start
  end
end

--- The next page to walk, or nil at the end; `count` items were given so far.
function Pager:next_page(count)
  if self.done then return nil end
  local data, info = self:fetch()
  if data == nil then error(info, 3) end
  self:advance(info)
  if #data == 0 then return nil end
  if self.prefetch and not self.done then self:start_prefetch(count + #data) end
  return data
end

-- The common options of every `each` (max_items, prefetch, retries), taken
-- out of a copy of args; misuse raises naming `who`. Returns the copy,
-- max_items, prefetch.
local function each_options(pipeline, who, args)
  if args ~= nil and type(args) ~= "table" then
    error(("%s: expected a table of arguments, got %s"):format(who, type(args)), 4)
  end
  local a = copy(args or {})
  local max_items, prefetch = a.max_items, a.prefetch
  a.max_items, a.prefetch = nil, nil
  if prefetch ~= nil and type(prefetch) ~= "boolean" then
    error(("%s: prefetch must be a boolean"):format(who), 4)
  end
  if a.retries ~= nil then
    local ok, perr = retry.policy(a.retries, pipeline.policy)
    if ok == nil then error(("%s: %s"):format(who, perr), 4) end
  end
  if max_items ~= nil and (compat.math_type(max_items) ~= "integer" or max_items < 0) then
    error(("%s: max_items must be a non-negative integer"):format(who), 4)
  end
  return a, max_items, prefetch
end

-- The iterator over a Pager: returns iterator, nil, nil, closer.
local function iterate(self, max_items)
  local closer
  local prefetch = self.prefetch
  if prefetch then
    local function drop() self:drop() end
    closer = setmetatable({}, { __close = drop, __call = drop })
  end
  -- The walk through a page stays in this closure's upvalues: it runs once per item.
  local page, i, count = nil, 0, 0
  local function iter()
    if max_items and count >= max_items then return nil end
    if page == nil or i >= #page then
      page, i = self:next_page(count), 0
      if page == nil then return nil end
    elseif prefetch and i % 32 == 0 and self.pending then
      self.sched.step(0) -- keeps the prefetch's transfer moving
    end
    i = i + 1
    count = count + 1
    return page[i]
  end
  return iter, nil, nil, closer
end

--- pd.each("/api/v2/deals/{id}/followers", { path_params = {...}, query = {...}, max_items, prefetch,
-- paging }): the pages of a raw GET path (pd.request's checks), by cursor
-- under /api/v2 and by offset elsewhere unless `paging` says otherwise.
function M.each_path(pipeline, sched, path, args)
  local a, max_items, prefetch = each_options(pipeline, "pipedrive.each", args)
  for k in pairs(a) do
    if k ~= "query" and k ~= "path_params" and k ~= "paging" and k ~= "retries" then
      error(("pipedrive.each: unknown option '%s' (query, path_params, paging, retries, max_items, prefetch)")
        :format(tostring(k)), 3)
    end
  end
  local opts = { path_params = a.path_params, paging = a.paging, retries = a.retries }
  local plan = pipeline:request_plan("GET", path, { query = a.query, path_params = a.path_params,
    paging = a.paging, retries = a.retries }, 2)
  local query = copy(a.query or {})
  local self = setmetatable({ pipeline = pipeline, sched = sched, args = query, paging = plan.paging, path = plan.path,
    max_items = max_items, prefetch = prefetch and sched ~= nil, done = false }, Pager)
  self.caller = function(q)
    local o = copy(opts)
    o.query = q
    return pipeline:request("GET", plan.path, o, 3)
  end
  return iterate(self, max_items)
end

--- pd.<resource>.each(args), and each_<name> / pd.each(fn) for any operation
-- with paging: checks the arguments now (misuse raises at the for statement),
-- returns iterator, nil, nil, closer. The closer (a to-be-closed value in Lua
-- 5.4, callable before) drops a prefetch left by a break. `fname` names the
-- function in messages ("each" by default).
function M.each(pipeline, sched, rname, op, args, fname)
  fname = fname or "each"
  local who = ("pipedrive.%s.%s"):format(rname, fname)
  local a, max_items, prefetch = each_options(pipeline, who, args)
  local plan = pipeline:plan(op)
  -- The largest page the operation allows (500 unless its limit says less).
  local limit = op.params and op.params.limit
  if plan.paging ~= "none" and a.limit == nil and limit then
    -- With expand, pages of 100: one ids= request per relation covers a page.
    a.limit = math.min(a.expand ~= nil and 100 or 500, limit.max or 500)
  end
  local checked = a
  if a.retries ~= nil or a.field_names ~= nil or a.expand ~= nil then
    -- field_names and expand are checked (and taken off) by extras.lua on each page's call.
    checked = copy(a)
    checked.retries = nil
    if a.field_names ~= nil or a.expand ~= nil then
      checked = require("pipedrive.extras").options(pipeline, who, checked, 3)
    end
  end
  local ok, problem = params.translate(op, plan.version, checked)
  if not ok then error(("%s: %s"):format(who, problem), 3) end
  -- prefetch needs the scheduler: not with a Lua transport or on plain 5.1.
  local self = setmetatable({ pipeline = pipeline, sched = sched, args = a,
    paging = plan.paging, path = plan.path, max_items = max_items, prefetch = prefetch and sched ~= nil,
    done = false }, Pager)
  self.caller = function(args_now) return pipeline:call(rname, fname, op, args_now, 2) end
  return iterate(self, max_items)
end

return M
