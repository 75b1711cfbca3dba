--- Runs a client's calls as coroutines over one libcurl multi handle: the
-- engine under pd.parallel and each{ prefetch = true }.
--
-- A task is a coroutine. When a call inside it reaches the transport, the
-- transport yields the built request (`s.perform`); the scheduler adds it to
-- the multi handle and resumes the task with the answer once libcurl has it.
-- A retry wait inside a task yields a timer (`s.sleep`) instead of sleeping,
-- so the other tasks go on. A task that yields nothing (the OAuth refresh's
-- waiters in oauth.lua) is resumed again after the next round.
--
-- Tasks are started, and resumed, only from the scheduler's loop (never from
-- inside one another), so the C stack never grows with the number of tasks.
local compat = require "pipedrive.compat"
local core = require "pipedrive.core"

local M = {}

local HTTP, SLEEP = {}, {} -- yield markers, compared by identity

--- A scheduler. `make_multi()` returns a core multi handle; it is called on
-- first need, so a client that never runs anything in parallel has none.
function M.new(make_multi)
  local s = {}
  local multi
  local by_co = setmetatable({}, { __mode = "k" }) -- coroutine -> task (ours only)
  local by_id = {}                                 -- transfer id -> task
  local timers = {}                                -- { at, task } not yet due
  local ready = {}                                 -- tasks to resume, with task.args
  local idle = {}                                  -- tasks that yielded nothing
  local closed = false
  s.tasks = 0 -- tasks alive: while 0, the transport need not ask current()

  --- The task running now, when it is one of ours; nil elsewhere (the main
  -- program, or a coroutine of the user's own inside a task).
  function s.current()
    local co = coroutine.running()
    return by_co[co]
  end

  --- Inside a task: hands `req` to the multi handle and waits for its answer.
  function s.perform(req)
    local ok, a, b = coroutine.yield(HTTP, req)
    if not ok then error(a, 0) end
    return a, b
  end

  --- Inside a task: lets the others run for `seconds`.
  function s.sleep(seconds)
    coroutine.yield(SLEEP, seconds)
  end

  --- A new task running fn(); `done(results)` is called with
  -- compat.pack(true, fn's returns...) or { false, err } when it raised.
  function s.spawn(fn, done)
    if closed then error("pipedrive: the client is closed", 3) end
    local task = { co = coroutine.create(fn), done = done, args = { n = 0 } }
    by_co[task.co] = task
    ready[#ready + 1] = task
    s.tasks = s.tasks + 1
    return task
  end

  local function finish(task, results)
    by_co[task.co] = nil
    s.tasks = s.tasks - 1
    task.finished = true
    task.results = results
    if task.done then task.done(results) end
  end

  -- Resumes one task with task.args and files it where its yield says.
  local function resume(task)
    local args = task.args
    task.args = nil
    local r = compat.pack(coroutine.resume(task.co, compat.unpack(args, 1, args.n)))
    if coroutine.status(task.co) == "dead" then
      if r[1] then
        r[1] = true
        return finish(task, r)
      end
      return finish(task, { false, r[2], n = 2 })
    end
    local marker = r[2]
    if marker == HTTP then
      multi = multi or make_multi()
      local ok, id = pcall(multi.add, multi, r[3])
      if ok then
        by_id[id] = task
        task.transfer = id
      else
        task.args = { false, id, n = 2 }
        ready[#ready + 1] = task
      end
    elseif marker == SLEEP then
      local at = core.now() + (tonumber(r[3]) or 0)
      timers[#timers + 1] = { at = at, task = task }
      task.timer = at
    else
      idle[#idle + 1] = task
    end
  end

  -- Resumes everything due now: started or answered tasks, due timers, idle ones.
  local function run_ready()
    local n = 0
    while #ready > 0 do
      local batch = ready
      ready = {}
      for i = 1, #batch do
        local task = batch[i]
        if not task.cancelled then
          resume(task)
          n = n + 1
        end
      end
    end
    return n
  end

  local function fire_timers(now)
    local kept = {}
    for i = 1, #timers do
      local t = timers[i]
      if t.task.cancelled then
        t.task.timer = nil -- dropped
      elseif t.at <= now then
        t.task.timer = nil
        t.task.args = { n = 0 }
        ready[#ready + 1] = t.task
      else
        kept[#kept + 1] = t
      end
    end
    timers = kept
  end

  local function wake_idle()
    local batch = idle
    idle = {}
    for i = 1, #batch do
      if not batch[i].cancelled then
        batch[i].args = { n = 0 }
        ready[#ready + 1] = batch[i]
      end
    end
    return #batch
  end

  -- Hands the answers of finished transfers to their tasks.
  local function deliver(...)
    for i = 1, select("#", ...) do
      local id = select(i, ...)
      local task = by_id[id]
      by_id[id] = nil
      local res, err = multi:result(id)
      if task and not task.cancelled then
        task.transfer = nil
        task.args = { true, res, err, n = 3 }
        ready[#ready + 1] = task
      end
    end
  end

  --- One round: resumes what is ready, then waits at most `max_wait` seconds
  -- for a transfer to finish or a timer to fall due. Returns true while any
  -- task is still alive.
  function s.step(max_wait)
    run_ready()
    local now = core.now()
    local wait = max_wait or 0
    for i = 1, #timers do
      local left = timers[i].at - now
      if left < wait then wait = left end
    end
    if #idle > 0 and wait > 0.002 then wait = 0.002 end
    if wait < 0 then wait = 0 end
    if multi and multi:pending() > 0 then
      deliver(multi:step(wait))
    elseif wait > 0 and (#timers > 0 or #idle > 0) then
      core.sleep(wait)
    end
    fire_timers(core.now())
    wake_idle()
    run_ready()
    return next(by_id) ~= nil or #timers > 0 or #idle > 0 or #ready > 0
  end

  --- Runs the loop until `task` has finished; returns its results table.
  function s.wait(task)
    while not task.finished do
      if not s.step(1) and not task.finished then
        error("pipedrive: scheduler stalled: the task waits for nothing", 2)
      end
    end
    return task.results
  end

  --- Abandons a task (its transfer is removed, its coroutine closed).
  function s.cancel(task)
    if task.finished or task.cancelled then return end
    task.cancelled = true
    s.tasks = s.tasks - 1
    if task.transfer and multi then
      by_id[task.transfer] = nil
      pcall(multi.remove, multi, task.transfer)
      task.transfer = nil
    end
    by_co[task.co] = nil
    if coroutine.close and coroutine.status(task.co) == "suspended" then coroutine.close(task.co) end
  end

  --- Closes the multi handle; idempotent. Tasks still running are dropped.
  function s.close()
    closed = true
    for _, task in pairs(by_id) do task.cancelled = true end
    by_id, timers, ready, idle = {}, {}, {}, {}
    if multi then multi:close() end
  end

  --- Transfers in flight (for tests and pd.stats).
  function s.in_flight()
    return multi and multi:pending() or 0
  end

  return s
end

-- One slot of pd.parallel's results from compat.pack(ok, fn's returns...).
local function parallel_slot(r)
  if not r[1] then return { nil, r[2], n = 2, ok = false, err = r[2], raised = true } end
  local slot = compat.pack(compat.unpack(r, 2, r.n))
  if slot[1] == nil and slot[2] ~= nil then
    slot.ok, slot.err = false, slot[2]
  else
    slot.ok, slot.value, slot.info = true, slot[1], slot[2]
  end
  return slot
end

local PARALLEL_OPTS = { concurrency = true, on_result = true }

--- pd.parallel's body: checks, then runs the functions as tasks of `sched`
-- (or one after another when there is none: a Lua transport, or a call from
-- inside a parallel task). Returns the slots in order and the failure count.
-- Reached by tail calls from pd.parallel: level 3 is the user's caller, as
-- the errors have always been placed.
function M.parallel(sched, fns, popts)
  if type(fns) ~= "table" then error("pipedrive.parallel: expected a list of functions", 3) end
  local n = #fns
  for k, fn in pairs(fns) do
    if compat.math_type(k) ~= "integer" or k < 1 or k > n then
      error("pipedrive.parallel: expected a list of functions (keys 1..n, no holes)", 3)
    end
    if type(fn) ~= "function" then error(("pipedrive.parallel: item %d is not a function"):format(k), 3) end
  end
  popts = popts or {}
  if type(popts) ~= "table" then error("pipedrive.parallel: options must be a table", 3) end
  for k in pairs(popts) do
    if not PARALLEL_OPTS[k] then error(("pipedrive.parallel: unknown option '%s'"):format(tostring(k)), 3) end
  end
  local conc = popts.concurrency or 8
  if compat.math_type(conc) ~= "integer" or conc < 1 or conc > 1024 then
    error("pipedrive.parallel: concurrency must be an integer from 1 to 1024", 3)
  end
  local on_result = popts.on_result
  if on_result ~= nil and type(on_result) ~= "function" then
    error("pipedrive.parallel: on_result must be a function(i, slot)", 3)
  end
  local results, failed, finished = {}, 0, 0
  local function record(i, r)
    local slot = parallel_slot(r)
    results[i] = slot
    finished = finished + 1
    if not slot.ok then failed = failed + 1 end
    if on_result then on_result(i, slot) end
  end
  if not sched or sched.current() then
    for i = 1, n do record(i, compat.pack(pcall(fns[i]))) end
    return results, failed
  end
  local next_i, active, tasks = 1, 0, {}
  local launch
  launch = function()
    while active < conc and next_i <= n do
      local i = next_i
      next_i, active = i + 1, active + 1
      tasks[i] = sched.spawn(fns[i], function(r)
        tasks[i], active = nil, active - 1
        launch() -- only queues the next task; the scheduler's loop starts it
        record(i, r)
      end)
    end
  end
  local ok, err = pcall(function()
    launch()
    while finished < n do
      if not sched.step(1) and finished < n then error("pipedrive.parallel: stalled", 0) end
    end
  end)
  if not ok then
    for _, task in pairs(tasks) do sched.cancel(task) end
    error(err, 0)
  end
  return results, failed
end

return M
