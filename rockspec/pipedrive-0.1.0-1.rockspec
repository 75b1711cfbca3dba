-- Build offline from a checkout (any of 5.1 to 5.4; LuaJIT through a luarocks config
-- naming it, see rockspec/check.sh, which installs and checks each into a temporary tree):
--   luarocks --lua-version=5.4 make --deps-mode=none rockspec/pipedrive-0.1.0-1.rockspec
-- The Makefile finds libcurl's multiarch header through pkg-config, so no
-- CURL_INCDIR is needed on Debian.
rockspec_format = "3.0"
package = "pipedrive"
version = "0.1.0-1"
source = {
  url = "git+file:///pipedrive-lua",
}
description = {
  summary = "Pipedrive CRM client for Lua with a C core (libcurl, JSON mapping, a local sandbox)",
  detailed = [[
Deals, leads, organizations and persons (list, each, add, search, get, delete)
against Pipedrive's API v2 or v1, with integers kept as integers, errors as
values, lazy paging, and a stateful local Pipedrive (pipedrive-sandbox) for tests.
]],
  license = "MIT",
  labels = { "pipedrive", "crm", "api", "http" },
}
dependencies = {
  "lua >= 5.1",
  "lua-cjson >= 2.1", -- used by the sandbox only
}
external_dependencies = {
  CURL = { library = "curl" },
  MICROHTTPD = { library = "microhttpd" },
}
build = {
  type = "make",
  build_target = "all",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUA = "$(LUA)",
  },
  install_target = "install",
  -- the same LUA and headers as the build: the Makefile picks build/<interpreter>/ from them
  install_variables = {
    INST_LIBDIR = "$(LIBDIR)",
    INST_LUADIR = "$(LUADIR)",
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUA = "$(LUA)",
  },
  install = {
    bin = { ["pipedrive-sandbox"] = "bin/pipedrive-sandbox", ["pipedrive"] = "bin/pipedrive" },
  },
}
