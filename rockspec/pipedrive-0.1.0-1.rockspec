-- The client: the modules of lua/pipedrive/ (not the sandbox, which is the rock
-- pipedrive-sandbox), the C modules pipedrive.core (libcurl), pipedrive.httpd
-- (libmicrohttpd) and pipedrive.hiredis (hiredis, for pipedrive.redis), and the
-- `pipedrive` command. No dependency but Lua itself.
--
-- From a checkout, without any server:
--   make rock                    # build/rocks/pipedrive-0.1.0-1.src.rock (+ the sandbox's)
--   luarocks --lua-version=5.4 install build/rocks/pipedrive-0.1.0-1.src.rock
-- or in place: luarocks --lua-version=5.4 make rockspec/pipedrive-0.1.0-1.rockspec
-- libcurl, libmicrohttpd and hiredis are found under /usr/local, /usr or /; anywhere else pass
-- CURL_DIR=/opt/curl (or CURL_INCDIR=/opt/curl/include CURL_LIBDIR=/opt/curl/lib),
-- MICROHTTPD_DIR=... and HIREDIS_DIR=... to luarocks.
rockspec_format = "3.0"
package = "pipedrive"
version = "0.1.0-1"
source = {
  url = "https://github.com/pipedrive-lua/pipedrive-lua/archive/v0.1.0.tar.gz",
  dir = "pipedrive-lua-0.1.0",
}
description = {
  summary = "Pipedrive CRM client for Lua with a C core (libcurl, JSON mapping, webhooks, OpenResty)",
  detailed = [[
Deals, leads, organizations, persons and the rest of Pipedrive's API v2 and v1
(list, each, add, update, search, get, delete), with integers kept as integers,
errors as values, lazy paging, OAuth, webhook triggers, OpenResty support and a
`pipedrive` command. The local Pipedrive simulator for tests is the rock
pipedrive-sandbox.
]],
  homepage = "https://github.com/pipedrive-lua/pipedrive-lua",
  license = "MIT",
  labels = { "pipedrive", "crm", "api", "http" },
}
dependencies = {
  "lua >= 5.1",
}
-- On Linux libcurl's header is not tested: Debian and Ubuntu keep it in
-- /usr/include/<triplet>/curl/, a directory the compiler searches but luarocks
-- (3.8 at least) does not, so the test would fail where the build works. The
-- library is tested everywhere; elsewhere curl/curl.h is too.
external_dependencies = {
  CURL = { library = "curl" },
  MICROHTTPD = { header = "microhttpd.h", library = "microhttpd" },
  HIREDIS = { header = "hiredis/hiredis.h", library = "hiredis" },
  platforms = {
    macosx = { CURL = { header = "curl/curl.h" } },
    bsd = { CURL = { header = "curl/curl.h" } },
    solaris = { CURL = { header = "curl/curl.h" } },
    cygwin = { CURL = { header = "curl/curl.h" } },
  },
}
build = {
  type = "builtin",
  modules = {
    ["pipedrive"] = "lua/pipedrive/init.lua",
    ["pipedrive.cli"] = "lua/pipedrive/cli.lua",
    ["pipedrive.cli_output"] = "lua/pipedrive/cli_output.lua",
    ["pipedrive.client"] = "lua/pipedrive/client.lua",
    ["pipedrive.compat"] = "lua/pipedrive/compat.lua",
    ["pipedrive.login"] = "lua/pipedrive/login.lua",
    ["pipedrive.nginx_snippet"] = "lua/pipedrive/nginx_snippet.lua",
    ["pipedrive.ngx"] = "lua/pipedrive/ngx.lua",
    ["pipedrive.oauth"] = "lua/pipedrive/oauth.lua",
    ["pipedrive.operations"] = "lua/pipedrive/operations/init.lua",
    ["pipedrive.operations.overlay"] = "lua/pipedrive/operations/overlay.lua",
    -- generated operations: begin (make operations)
    ["pipedrive.operations.gen.activities"] = "lua/pipedrive/operations/gen/activities.lua",
    ["pipedrive.operations.gen.activity_fields"] = "lua/pipedrive/operations/gen/activity_fields.lua",
    ["pipedrive.operations.gen.activity_types"] = "lua/pipedrive/operations/gen/activity_types.lua",
    ["pipedrive.operations.gen.billing"] = "lua/pipedrive/operations/gen/billing.lua",
    ["pipedrive.operations.gen.boards"] = "lua/pipedrive/operations/gen/boards.lua",
    ["pipedrive.operations.gen.call_logs"] = "lua/pipedrive/operations/gen/call_logs.lua",
    ["pipedrive.operations.gen.channels"] = "lua/pipedrive/operations/gen/channels.lua",
    ["pipedrive.operations.gen.currencies"] = "lua/pipedrive/operations/gen/currencies.lua",
    ["pipedrive.operations.gen.deal_fields"] = "lua/pipedrive/operations/gen/deal_fields.lua",
    ["pipedrive.operations.gen.deals"] = "lua/pipedrive/operations/gen/deals.lua",
    ["pipedrive.operations.gen.files"] = "lua/pipedrive/operations/gen/files.lua",
    ["pipedrive.operations.gen.filters"] = "lua/pipedrive/operations/gen/filters.lua",
    ["pipedrive.operations.gen.goals"] = "lua/pipedrive/operations/gen/goals.lua",
    ["pipedrive.operations.gen.item_search"] = "lua/pipedrive/operations/gen/item_search.lua",
    ["pipedrive.operations.gen.lead_fields"] = "lua/pipedrive/operations/gen/lead_fields.lua",
    ["pipedrive.operations.gen.lead_labels"] = "lua/pipedrive/operations/gen/lead_labels.lua",
    ["pipedrive.operations.gen.lead_sources"] = "lua/pipedrive/operations/gen/lead_sources.lua",
    ["pipedrive.operations.gen.leads"] = "lua/pipedrive/operations/gen/leads.lua",
    ["pipedrive.operations.gen.legacy_teams"] = "lua/pipedrive/operations/gen/legacy_teams.lua",
    ["pipedrive.operations.gen.mailbox"] = "lua/pipedrive/operations/gen/mailbox.lua",
    ["pipedrive.operations.gen.meetings"] = "lua/pipedrive/operations/gen/meetings.lua",
    ["pipedrive.operations.gen.note_fields"] = "lua/pipedrive/operations/gen/note_fields.lua",
    ["pipedrive.operations.gen.notes"] = "lua/pipedrive/operations/gen/notes.lua",
    ["pipedrive.operations.gen.organization_fields"] = "lua/pipedrive/operations/gen/organization_fields.lua",
    ["pipedrive.operations.gen.organization_relationships"] = "lua/pipedrive/operations/gen/organization_relationships.lua",
    ["pipedrive.operations.gen.organizations"] = "lua/pipedrive/operations/gen/organizations.lua",
    ["pipedrive.operations.gen.permission_sets"] = "lua/pipedrive/operations/gen/permission_sets.lua",
    ["pipedrive.operations.gen.person_fields"] = "lua/pipedrive/operations/gen/person_fields.lua",
    ["pipedrive.operations.gen.persons"] = "lua/pipedrive/operations/gen/persons.lua",
    ["pipedrive.operations.gen.phases"] = "lua/pipedrive/operations/gen/phases.lua",
    ["pipedrive.operations.gen.pipelines"] = "lua/pipedrive/operations/gen/pipelines.lua",
    ["pipedrive.operations.gen.product_fields"] = "lua/pipedrive/operations/gen/product_fields.lua",
    ["pipedrive.operations.gen.products"] = "lua/pipedrive/operations/gen/products.lua",
    ["pipedrive.operations.gen.project_fields"] = "lua/pipedrive/operations/gen/project_fields.lua",
    ["pipedrive.operations.gen.project_templates"] = "lua/pipedrive/operations/gen/project_templates.lua",
    ["pipedrive.operations.gen.projects"] = "lua/pipedrive/operations/gen/projects.lua",
    ["pipedrive.operations.gen.recents"] = "lua/pipedrive/operations/gen/recents.lua",
    ["pipedrive.operations.gen.roles"] = "lua/pipedrive/operations/gen/roles.lua",
    ["pipedrive.operations.gen.stages"] = "lua/pipedrive/operations/gen/stages.lua",
    ["pipedrive.operations.gen.tasks"] = "lua/pipedrive/operations/gen/tasks.lua",
    ["pipedrive.operations.gen.user_connections"] = "lua/pipedrive/operations/gen/user_connections.lua",
    ["pipedrive.operations.gen.user_settings"] = "lua/pipedrive/operations/gen/user_settings.lua",
    ["pipedrive.operations.gen.users"] = "lua/pipedrive/operations/gen/users.lua",
    ["pipedrive.operations.gen.webhooks"] = "lua/pipedrive/operations/gen/webhooks.lua",
    ["pipedrive.operations.ids"] = "lua/pipedrive/operations/ids.lua",
    ["pipedrive.operations.index"] = "lua/pipedrive/operations/index.lua",
    -- generated operations: end
    ["pipedrive.paging"] = "lua/pipedrive/paging.lua",
    ["pipedrive.fields"] = "lua/pipedrive/fields.lua",
    ["pipedrive.expand"] = "lua/pipedrive/expand.lua",
    ["pipedrive.extras"] = "lua/pipedrive/extras.lua",
    ["pipedrive.params"] = "lua/pipedrive/params.lua",
    ["pipedrive.pipeline"] = "lua/pipedrive/pipeline.lua",
    ["pipedrive.redact"] = "lua/pipedrive/redact.lua",
    ["pipedrive.pace"] = "lua/pipedrive/pace.lua",
    ["pipedrive.pace_shared"] = "lua/pipedrive/pace_shared.lua",
    ["pipedrive.redis"] = "lua/pipedrive/redis.lua",
    ["pipedrive.redis_ngx"] = "lua/pipedrive/redis_ngx.lua",
    ["pipedrive.redis_stores"] = "lua/pipedrive/redis_stores.lua",
    ["pipedrive.redirect"] = "lua/pipedrive/redirect.lua",
    ["pipedrive.retry"] = "lua/pipedrive/retry.lua",
    ["pipedrive.scheduler"] = "lua/pipedrive/scheduler.lua",
    ["pipedrive.token_file"] = "lua/pipedrive/token_file.lua",
    ["pipedrive.triggers"] = "lua/pipedrive/triggers/init.lua",
    ["pipedrive.triggers.callbacks"] = "lua/pipedrive/triggers/callbacks.lua",
    ["pipedrive.triggers.event"] = "lua/pipedrive/triggers/event.lua",
    ["pipedrive.triggers.handler"] = "lua/pipedrive/triggers/handler.lua",
    ["pipedrive.triggers.listener"] = "lua/pipedrive/triggers/listener.lua",
    ["pipedrive.triggers.reconcile"] = "lua/pipedrive/triggers/reconcile.lua",
    ["pipedrive.triggers.seen"] = "lua/pipedrive/triggers/seen.lua",
    ["pipedrive.triggers.state"] = "lua/pipedrive/triggers/state.lua",
    -- one unit: core.c #includes the other csrc/*.c
    ["pipedrive.core"] = {
      sources = { "csrc/core.c" },
      defines = { "_POSIX_C_SOURCE=200809L" },
      incdirs = { "$(CURL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)" },
      libraries = { "curl" },
    },
    ["pipedrive.httpd"] = {
      sources = { "csrc/httpd.c" },
      defines = { "_POSIX_C_SOURCE=200809L" },
      incdirs = { "$(MICROHTTPD_INCDIR)" },
      libdirs = { "$(MICROHTTPD_LIBDIR)" },
      libraries = { "microhttpd" },
    },
    -- pipedrive.redis's plain-Lua backend (the core does not link hiredis)
    ["pipedrive.hiredis"] = {
      sources = { "csrc/redis.c" },
      defines = { "_POSIX_C_SOURCE=200809L" },
      incdirs = { "$(HIREDIS_INCDIR)" },
      libdirs = { "$(HIREDIS_LIBDIR)" },
      libraries = { "hiredis" },
    },
  },
  install = {
    bin = { ["pipedrive"] = "bin/pipedrive" },
  },
}
