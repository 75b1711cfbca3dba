-- The local Pipedrive simulator (`pipedrive-sandbox`, require "pipedrive.sandbox"):
-- a separate program for tests, on the pipedrive rock's pipedrive.core (its clock) and
-- its own build of the listener with fault injection (pipedrive.sandbox.httpd).
--
-- lua-cjson is its only other dependency. Debian ships it as a package
-- (lua-cjson), not as a rock, so on Debian tell luarocks once that it is there
-- (no server is contacted then):
--   luarocks --lua-version=5.4 config rocks_provided.lua-cjson 2.1.0-1
--   luarocks --lua-version=5.4 install build/rocks/pipedrive-sandbox-0.1.0-1.src.rock
-- (rockspec/check.sh does the same through a LUAROCKS_CONFIG file.)
rockspec_format = "3.0"
package = "pipedrive-sandbox"
version = "0.1.0-1"
source = {
  url = "https://github.com/pipedrive-lua/pipedrive-lua/archive/v0.1.0.tar.gz",
  dir = "pipedrive-lua-0.1.0",
}
description = {
  summary = "A local, stateful Pipedrive API simulator for testing Pipedrive clients",
  detailed = [[
pipedrive-sandbox answers Pipedrive's API v1 and v2 (deals, leads, persons,
organizations, activities, webhooks, OAuth hand-modelled; every other operation
of Pipedrive's OpenAPI files from a generic store) from memory on loopback, with
Pipedrive's paging, errors, rate limits and webhook deliveries, and fault
injection for tests. From Lua, require("pipedrive.sandbox.spawn").start{}
runs one on a free port. Part of pipedrive-lua.
]],
  homepage = "https://github.com/pipedrive-lua/pipedrive-lua",
  license = "MIT",
  labels = { "pipedrive", "crm", "testing", "mock", "http" },
}
dependencies = {
  "lua >= 5.1",
  "pipedrive == 0.1.0", -- pipedrive.core (the clock) and pipedrive.compat
  "lua-cjson >= 2.1",
}
external_dependencies = {
  MICROHTTPD = { header = "microhttpd.h", library = "microhttpd" },
}
build = {
  type = "builtin",
  modules = {
    ["pipedrive.sandbox"] = "lua/pipedrive/sandbox/init.lua",
    ["pipedrive.sandbox.activities"] = "lua/pipedrive/sandbox/activities.lua",
    ["pipedrive.sandbox.api"] = "lua/pipedrive/sandbox/api.lua",
    ["pipedrive.sandbox.check"] = "lua/pipedrive/sandbox/check.lua",
    ["pipedrive.sandbox.delivery"] = "lua/pipedrive/sandbox/delivery.lua",
    ["pipedrive.sandbox.faults"] = "lua/pipedrive/sandbox/faults.lua",
    ["pipedrive.sandbox.fields"] = "lua/pipedrive/sandbox/fields.lua",
    ["pipedrive.sandbox.generic"] = "lua/pipedrive/sandbox/generic.lua",
    ["pipedrive.sandbox.json"] = "lua/pipedrive/sandbox/json.lua",
    ["pipedrive.sandbox.oauth"] = "lua/pipedrive/sandbox/oauth.lua",
    -- generated from openapi/*.yaml by tools/gen_sandbox_routes.lua (`make sandbox-routes`)
    ["pipedrive.sandbox.routes_gen"] = "lua/pipedrive/sandbox/routes_gen.lua",
    ["pipedrive.sandbox.server"] = "lua/pipedrive/sandbox/server.lua",
    ["pipedrive.sandbox.shapes"] = "lua/pipedrive/sandbox/shapes.lua",
    ["pipedrive.sandbox.spawn"] = "lua/pipedrive/sandbox/spawn.lua",
    ["pipedrive.sandbox.store"] = "lua/pipedrive/sandbox/store.lua",
    ["pipedrive.sandbox.time"] = "lua/pipedrive/sandbox/time.lua",
    ["pipedrive.sandbox.util"] = "lua/pipedrive/sandbox/util.lua",
    ["pipedrive.sandbox.webhooks"] = "lua/pipedrive/sandbox/webhooks.lua",
    ["pipedrive.sandbox.uploads"] = "lua/pipedrive/sandbox/uploads.lua",
    -- the listener of pipedrive.httpd built with the sandbox's fault injection
    -- (drop, hold, cut, drip, stats): csrc/httpd_faults.c #includes csrc/httpd.c
    ["pipedrive.sandbox.httpd"] = {
      sources = { "csrc/httpd_faults.c" },
      defines = { "_POSIX_C_SOURCE=200809L" },
      incdirs = { "$(MICROHTTPD_INCDIR)" },
      libdirs = { "$(MICROHTTPD_LIBDIR)" },
      libraries = { "microhttpd" },
    },
  },
  install = {
    bin = { ["pipedrive-sandbox"] = "bin/pipedrive-sandbox" },
  },
}
