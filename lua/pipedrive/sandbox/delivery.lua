--- Webhook deliveries: a queue worked off from the server loop, one background
-- curl process per attempt, so the sandbox never waits for a receiver.
--
--   local d = delivery.new{ retry_delays = { 3, 30, 150 }, duplicate = false, timeout = 10 }
--   d:enqueue{ url, user, password, body = function(attempt) -> JSON text,
--              webhook (table: last_delivery_time, last_http_status are kept up to date),
--              event_id, object, action }
--   -- in the server loop, after each srv:step(d:wait(0.5)):
--   d:pump()
--
-- An attempt is an HTTP POST of body(attempt) with content-type
-- application/json (and "Authorization: Basic ..." when user or password is
-- set). Any 2xx answer within `timeout` seconds is a success; anything else
-- (another status, no connection, too slow: status 0) a failure, retried after
-- retry_delays[1], [2], ... seconds; after the last retry the delivery is
-- dropped. With `duplicate`, each successful delivery is sent once more (as
-- real networks sometimes do). At most one attempt per webhook is under way at
-- a time, so a webhook's first attempts arrive in the order of its events.
--
-- The curl process reads its URL and headers from a config file (mode 0600,
-- so the password is on no command line) and writes the status code to a
-- result file, which pump() polls. `log` holds every finished attempt:
-- { webhook_id, event_id, object, action, attempt, status, ok, time,
--   duplicate (when it was the extra copy), dropped (on the last failure) }.
local compat = require "pipedrive.compat"
local json = require "pipedrive.sandbox.json"
local util = require "pipedrive.sandbox.util"
local time = require "pipedrive.sandbox.time"

local array = json.array

local M = {}

M.DEFAULT_RETRY_DELAYS = { 3, 30, 150 }
M.DEFAULT_TIMEOUT = 10
M.MAX_RUNNING = 16
M.LOG_MAX = 10000

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

-- A value inside double quotes of a curl config file.
local function config_quote(s)
  return '"' .. tostring(s):gsub('[\\"]', "\\%0") .. '"'
end

local function write_file(path, text)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  f:write(text)
  f:close()
  return true
end

--- Base64 with padding (HTTP Basic credentials).
function M.basic(user, password)
  local s = (user or "") .. ":" .. (password or "")
  return util.b64_encode(s) .. ("="):rep((3 - #s % 3) % 3)
end

local Delivery = {}
Delivery.__index = Delivery

function M.new(opts)
  opts = opts or {}
  local d = setmetatable({
    delays = opts.retry_delays or M.DEFAULT_RETRY_DELAYS,
    duplicate = opts.duplicate == true,
    timeout = opts.timeout or M.DEFAULT_TIMEOUT,
    clock = opts.clock or time.now,
    wall = opts.wall or time.wall,
    curl = opts.curl or "curl",
    max_running = opts.max_running or M.MAX_RUNNING,
    running = {},
    seq = 0,
  }, Delivery)
  d:reset()
  return d
end

--- Forgets the queue and the log; attempts under way finish unrecorded.
function Delivery:reset()
  self.queue = {}
  self.log = array()
  self.dropped = 0
  for _, job in ipairs(self.running) do job.discard = true end
end

--- Queues the first attempt of a delivery, due now.
function Delivery:enqueue(job)
  job.attempt = job.attempt or 1
  job.due = job.due or self.clock()
  self.seq = self.seq + 1
  job.seq = self.seq
  self.queue[#self.queue + 1] = job
  return job
end

--- Seconds the server loop may sleep before pump() has something to do (at most `max`).
function Delivery:wait(max)
  if #self.running > 0 then return math.min(max, 0.02) end
  local now, wait = self.clock(), max
  for _, job in ipairs(self.queue) do
    local left = job.due - now
    if left < wait then wait = left end
  end
  if wait < 0 then wait = 0 end
  return wait
end

function Delivery:pending()
  return #self.queue + #self.running
end

function Delivery:record(entry)
  local log = self.log
  log[#log + 1] = entry
  if #log > M.LOG_MAX then
    local keep = compat.idiv(M.LOG_MAX, 2)
    for i = 1, keep do log[i] = log[#log - keep + i] end
    for i = #log, keep + 1, -1 do log[i] = nil end
  end
end

-- Starts one attempt as a background curl process.
function Delivery:start(job)
  local cfg, body = os.tmpname(), os.tmpname() -- created with mode 0600
  local out = cfg .. ".out"
  local lines = {
    "url = " .. config_quote(job.url),
    'header = "Content-Type: application/json"',
    'header = "Expect:"',
    'user-agent = "Pipedrive-Webhooks (sandbox)"',
    'noproxy = "localhost,127.0.0.1,::1"',
  }
  if job.user or job.password then
    lines[#lines + 1] = 'header = "Authorization: Basic ' .. M.basic(job.user, job.password) .. '"'
  end
  local ok = write_file(cfg, table.concat(lines, "\n") .. "\n") and write_file(body, job.body(job.attempt))
  job.files = { cfg, body, out }
  job.started = self.clock()
  self.running[#self.running + 1] = job
  if not ok then
    job.failed_to_start = true
    return
  end
  -- The job removes its config and body itself once curl is done (so no
  -- credentials stay behind, whatever happens to the sandbox), then publishes
  -- the status; when close() removed the config first, it publishes nothing.
  local q_cfg, q_body, q_tmp, q_out = shell_quote(cfg), shell_quote(body), shell_quote(out .. ".tmp"), shell_quote(out)
  local cmd = ("(umask 077; %s -s -o /dev/null -w '%%{http_code}' --max-time %s -K %s --data-binary @%s > %s"
    .. " 2>/dev/null; if [ -e %s ]; then rm -f %s %s; mv -f %s %s; else rm -f %s %s; fi) </dev/null >/dev/null 2>&1 &")
    :format(shell_quote(self.curl), tostring(self.timeout), q_cfg, q_body, q_tmp,
      q_cfg, q_cfg, q_body, q_tmp, q_out, q_body, q_tmp)
  if not compat.execute(cmd) then job.failed_to_start = true end
end

-- The status of a finished attempt, or nil while it runs.
function Delivery:poll(job)
  if job.failed_to_start then return 0 end
  local f = io.open(job.files[3], "rb")
  if f then
    local text = f:read("*a") or ""
    f:close()
    return compat.tointeger(tonumber(text:match("%d+") or "0")) or 0
  end
  -- a curl that neither answered nor ended in time (it has --max-time) counts as failed
  if self.clock() - job.started > self.timeout + 10 then return 0 end
  return nil
end

local function remove_files(job)
  for _, f in ipairs(job.files or {}) do os.remove(f) end
end

function Delivery:finish(job, status)
  remove_files(job)
  if job.discard then return end
  local ok = status >= 200 and status < 300
  local w = job.webhook
  local wall = self.wall()
  if w then
    w.last_delivery_time = wall
    w.last_http_status = status
  end
  local entry = {
    webhook_id = w and w.id, event_id = job.event_id, object = job.object, action = job.action,
    attempt = job.attempt, status = status, ok = ok, time = time.ms(wall),
  }
  if job.duplicate then entry.duplicate = true end
  self:record(entry)
  if ok then
    if self.duplicate and not job.duplicate then
      local copy = {}
      for k, v in pairs(job) do copy[k] = v end
      copy.duplicate, copy.due, copy.files, copy.started = true, self.clock(), nil, nil
      self.seq = self.seq + 1
      copy.seq = self.seq
      self.queue[#self.queue + 1] = copy
    end
    return
  end
  if not job.duplicate and job.attempt <= #self.delays then
    job.due = self.clock() + self.delays[job.attempt]
    job.attempt = job.attempt + 1
    job.files, job.started = nil, nil
    self.queue[#self.queue + 1] = job
  elseif not job.duplicate then
    entry.dropped = true
    self.dropped = self.dropped + 1
  end
end

--- Collects finished attempts and starts the due ones. Call it from the server
-- loop, between requests.
function Delivery:pump()
  local busy = {}
  local still = {}
  for _, job in ipairs(self.running) do
    local status = self:poll(job)
    if status then
      self:finish(job, status)
    else
      still[#still + 1] = job
      if job.webhook then busy[job.webhook] = true end
    end
  end
  self.running = still
  if #self.queue == 0 then return end
  local now = self.clock()
  table.sort(self.queue, function(a, b)
    if a.due ~= b.due then return a.due < b.due end
    return a.seq < b.seq
  end)
  local rest = {}
  for _, job in ipairs(self.queue) do
    local gone = job.webhook and job.webhook.removed -- so is what was still to be sent to it
    if gone then
      job.dropped = true
    elseif job.due <= now and #self.running < self.max_running and not (job.webhook and busy[job.webhook]) then
      self:start(job)
      if job.webhook then busy[job.webhook] = true end
    else
      rest[#rest + 1] = job
    end
  end
  self.queue = rest
end

--- Removes the config files of attempts still under way (each job then
-- removes the rest and publishes no result).
function Delivery:close()
  for _, job in ipairs(self.running) do
    if job.files then os.remove(job.files[1]) end
  end
  self.running = {}
  self.queue = {}
end

return M
