# Build, test and run the pipedrive Lua module.
# `make` builds build/pipedrive/{core,httpd,hiredis}.so for $(LUA_VERSION);
# `make test` runs the busted suite; `make demo` runs the quickstart against a sandbox.

# LUA picks the interpreter (lua5.1 .. lua5.4, luajit; a path works too), and
# LUA_VERSION, LUA_INCDIR and BUILD follow from it: `make test LUA=luajit` builds
# into build/luajit/ and runs the suite there. Lua 5.4 keeps build/ itself.
LUA         ?= lua$(or $(LUA_VERSION),5.4)
LUA_NAME    := $(notdir $(LUA))
LUA_IS_JIT  := $(findstring luajit,$(LUA_NAME))
LUA_VERSION ?= $(or $(if $(LUA_IS_JIT),5.1,$(filter 5.1 5.2 5.3 5.4,$(patsubst lua%,%,$(LUA_NAME)))),5.4)
LUA_INCDIR  ?= $(if $(LUA_IS_JIT),/usr/include/luajit-2.1,/usr/include/lua$(LUA_VERSION))
BUSTED      ?= busted
LUAS        ?= lua5.1 lua5.2 lua5.3 lua5.4 luajit

CURL_CFLAGS := $(shell pkg-config --cflags libcurl 2>/dev/null || curl-config --cflags)
CURL_LIBS   := $(shell pkg-config --libs libcurl 2>/dev/null || curl-config --libs)
MHD_CFLAGS  := $(shell pkg-config --cflags libmicrohttpd 2>/dev/null)
MHD_LIBS    := $(shell pkg-config --libs libmicrohttpd 2>/dev/null || echo -lmicrohttpd)
HIREDIS_CFLAGS := $(shell pkg-config --cflags hiredis 2>/dev/null)
HIREDIS_LIBS   := $(shell pkg-config --libs hiredis 2>/dev/null || echo -lhiredis)

CFLAGS  ?= -O2 -g
WARN     = -Wall -Wextra -Wshadow -Wpointer-arith -Wcast-qual -Wstrict-prototypes -Wmissing-prototypes
MYCFLAGS = -std=c99 -fPIC -fvisibility=hidden -D_POSIX_C_SOURCE=200809L -I$(LUA_INCDIR) $(WARN)
LIBFLAG ?= -shared

BUILD   ?= $(if $(filter lua5.4,$(LUA_NAME)),build,build/$(LUA_NAME))
CORE_SO  = $(BUILD)/pipedrive/core.so
HTTPD_SO = $(BUILD)/pipedrive/httpd.so
HIREDIS_SO = $(BUILD)/pipedrive/hiredis.so
SANDBOX_HTTPD_SO = $(BUILD)/pipedrive/sandbox/httpd.so
CORE_SRC = csrc/core.c $(filter-out csrc/core.c csrc/httpd.c csrc/httpd_faults.c csrc/redis.c,$(wildcard csrc/*.c)) $(wildcard csrc/*.h)
HTTPD_HDR = csrc/pd.h csrc/compat.h csrc/buf.h csrc/clock.h

.PHONY: FORCE all check-units operations docs sandbox-routes test test-all demo more-demo bench-startup oauth-demo openresty-demo triggers-demo lint clean rock deps asan asan-build valgrind fuzz fuzz-build fuzz-regress san-deps bench-faults

all: $(CORE_SO) $(HTTPD_SO) $(SANDBOX_HTTPD_SO) $(HIREDIS_SO)

# Rebuilt when the compiler flags or the Lua headers change, not only the sources
# (one build dir must never keep objects made for another Lua).
FLAGS_STAMP = $(BUILD)/.flags
$(FLAGS_STAMP): FORCE
	@mkdir -p $(BUILD)
	@echo '$(CC) $(CFLAGS) $(MYCFLAGS) $(LIBFLAG)' | cmp -s - $@ || echo '$(CC) $(CFLAGS) $(MYCFLAGS) $(LIBFLAG)' >$@
FORCE:

$(CORE_SO): $(CORE_SRC) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(MYCFLAGS) $(CURL_CFLAGS) $(LIBFLAG) -o $@ csrc/core.c $(CURL_LIBS)

$(HTTPD_SO): csrc/httpd.c $(HTTPD_HDR) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(MYCFLAGS) $(MHD_CFLAGS) $(LIBFLAG) -o $@ csrc/httpd.c $(MHD_LIBS)

# pipedrive.redis's plain-Lua backend: one Redis connection over hiredis (its
# own module, so the core does not depend on hiredis).
$(HIREDIS_SO): csrc/redis.c $(HTTPD_HDR) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(MYCFLAGS) $(HIREDIS_CFLAGS) $(LIBFLAG) -o $@ csrc/redis.c $(HIREDIS_LIBS)

# The sandbox's build of the same server, with fault injection (csrc/httpd_faults.c).
$(SANDBOX_HTTPD_SO): csrc/httpd_faults.c csrc/httpd.c $(HTTPD_HDR) $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(MYCFLAGS) $(MHD_CFLAGS) $(LIBFLAG) -o $@ csrc/httpd_faults.c $(MHD_LIBS)

# The whole suite, end to end against sandboxes on loopback.
# spec/support/summary.lua prints the closing line "N passed, N failed".
test: all
	LUA=$(LUA) $(BUSTED) --lua=$(LUA) --cpath='$(BUILD)/?.so' -o spec/support/summary.lua spec

# The suite once per interpreter of LUAS; the closing line sums them.
test-all:
	@sh spec/support/test_all.sh $(LUAS)

demo: all
	LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='$(BUILD)/?.so;;' $(LUA) examples/demo.lua

# examples/more_resources.lua (notes, products, fields, ...) against a local sandbox.
more-demo: all
	LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='$(BUILD)/?.so;;' $(LUA) examples/demo.lua more_resources

triggers-demo: all
	LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='$(BUILD)/?.so;;' $(LUA) examples/triggers.lua --demo

oauth-demo: all
	sh examples/oauth_demo.sh

# Start-up cost and per-call instructions (bench/RESULTS.md row 7); BASE=dir compares
# with another checkout (lua/, bin/, build/), e.g. `git archive main lua bin` plus build/.
bench-startup: all
	$(LUA) bench/startup.lua $(BASE) .

# The fault matrix once, counted (bench/RELIABILITY.md).
bench-faults: all
	$(LUA) bench/faults.lua

# examples/openresty/ in a real nginx against a sandbox (README "OpenResty").
openresty-demo: all
	@$(MAKE) --no-print-directory -s LUA=luajit all
	sh examples/openresty/demo.sh

# lua/pipedrive/operations/{gen/*,index,ids}.lua and the rockspec's module list
# from openapi/openapi-v2.yaml and openapi-v1.yaml (spec/operations_gen_spec.lua
# fails when the committed output is stale).
operations:
	lua5.4 tools/gen_operations.lua .

# docs/REFERENCE.md from lua/pipedrive/operations/, openapi/*.yaml and docs/gen/
# (spec/docs_reference_spec.lua fails when the committed file is stale).
docs:
	lua5.4 docs/gen/gen_reference.lua docs/REFERENCE.md

# lua/pipedrive/sandbox/routes_gen.lua from openapi/openapi-v2.yaml and openapi-v1.yaml (the
# sandbox's generic store; spec/sandbox_routes_spec.lua fails when the committed file is stale).
sandbox-routes:
	lua5.4 tools/gen_sandbox_routes.lua lua/pipedrive/sandbox/routes_gen.lua

# Each C file compiled alone (-fsyntax-only): proves it includes what it uses.
# Declarations of functions another file defines are expected ("used but
# never defined" / "declared static but never defined"); any other warning fails.
check-units:
	@fail=0; for f in csrc/*.c csrc/*.h; do \
	  out=$$($(CC) -x c -std=c99 -fsyntax-only -D_POSIX_C_SOURCE=200809L -I$(LUA_INCDIR) -Icsrc $(WARN) \
	    $(CURL_CFLAGS) $(MHD_CFLAGS) $(HIREDIS_CFLAGS) -fno-diagnostics-show-caret $$f 2>&1 | grep -E ': (warning|error):' | grep -v -E 'used but never defined|declared .static. but never defined'); \
	  if [ -n "$$out" ]; then echo "$$out"; fail=1; fi; \
	done; exit $$fail

lint: check-units
	luacheck -q lua spec bin examples docs/gen tools $(wildcard bench)
	cppcheck -q --enable=warning,portability --error-exitcode=1 --std=c99 -I$(LUA_INCDIR) csrc

# The source rocks pipedrive and pipedrive-sandbox, made from this checkout
# (no network) into $(ROCKS); installing one needs luarocks, not this Makefile:
# README "Install with LuaRocks", rockspec/pack.sh, rockspec/check.sh.
ROCKS ?= build/rocks
rock:
	@sh rockspec/pack.sh $(ROCKS)

# (pipedrive/ and csrc/*.o: what `luarocks make` leaves in the checkout)
clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(VALGRIND_BUILD) $(FUZZ_BUILD) pipedrive csrc/*.o

# ---------------------------------------------------------------- benchmarks
# `make bench`: every row of bench/RESULTS.md in one run (several minutes; not
# part of CI). bench/deps.sh installs nginx, wrk, Node.js, valgrind, ... and
# the Node SDK into bench/node_modules when missing. BENCH_ARGS=--quick for a
# shorter run.
.PHONY: bench
$(BUILD)/bench/raw_curl: bench/raw_curl.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -o $@ bench/raw_curl.c $(CURL_CFLAGS) -I$(LUA_INCDIR) $(CURL_LIBS) $(LUA_LIBS)

bench: all
	@bench/deps.sh
	@$(MAKE) --no-print-directory -s $(BUILD)/bench/raw_curl
	LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='$(BUILD)/?.so;;' $(LUA) bench/run.lua $(BENCH_ARGS)

# `make node-sdk-check`: Pipedrive's official Node.js SDK (bench/package.json pins it;
# installed by `npm ci` from bench/package-lock.json when missing) against a sandbox
# it starts on a free port: v2 deals, persons, organizations, activities, products and
# v1 leads, users, notes; every answer checked against the SDK's .d.ts types
# (bench/node_sdk_check.js; spec/node_sdk_spec.lua runs it when node and the SDK are there).
.PHONY: node-sdk-check
node-sdk-check: all
	@test -f bench/node_modules/pipedrive/package.json || (cd bench && npm ci --no-audit --no-fund --silent)
	LUA=$(LUA) node bench/node_sdk_check.js

# `make bench-ir`: only the callgrind counts of rows 1 and 4 (about a minute);
# BENCH_ARGS="--profile FILE" keeps the client's callgrind output for callgrind_annotate.
.PHONY: bench-ir
bench-ir: all
	@$(MAKE) --no-print-directory -s $(BUILD)/bench/raw_curl
	LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='$(BUILD)/?.so;;' $(LUA) bench/ir.lua $(BENCH_ARGS)

# ---------------------------------------------------------------- sanitizers
# `make asan`: both modules built by clang with ASan+UBSan into $(ASAN_BUILD),
# then the whole suite with every Lua process under that runtime.
# `make valgrind`: the whole suite under memcheck with the normal build.
# `make fuzz`: the libFuzzer harnesses of fuzz/, FUZZ_SECONDS each;
# `make fuzz-regress`: only replays fuzz/corpus and fuzz/regressions.
# fuzz/README.md and the header of sanitize/suite.sh tell what each covers.
SAN_CC      ?= clang
SAN_FLAGS   ?= -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ASAN_BUILD  ?= build-asan
VALGRIND_BUILD ?= build-valgrind
FUZZ_BUILD  ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = json request response oauth_token httpd triggers
FUZZ_FLAGS   = -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LUA_LIBS    := $(shell pkg-config --libs lua$(LUA_VERSION) 2>/dev/null || echo -llua$(LUA_VERSION))

san-deps:
	@./run deps-san

asan-build: san-deps
	@$(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) CC=$(SAN_CC) CFLAGS='-O1 -g $(SAN_FLAGS)' \
	  LIBFLAG='-shared $(SAN_FLAGS)' all

asan: asan-build
	@LUA=$(LUA) SAN_CC=$(SAN_CC) BUSTED=$(BUSTED) sanitize/suite.sh asan $(ASAN_BUILD) $(ASAN_BUILD)

valgrind: san-deps all
	@LUA=$(LUA) BUSTED=$(BUSTED) sanitize/suite.sh valgrind $(BUILD) $(VALGRIND_BUILD)

FUZZ_BINS = $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/harness.h $(CORE_SRC)
	@mkdir -p $(dir $@)
	$(SAN_CC) -O1 -g $(FUZZ_FLAGS) -Wall -Wextra -std=c99 -D_POSIX_C_SOURCE=200809L -I$(LUA_INCDIR) -Icsrc $(CURL_CFLAGS) \
	  -o $@ $< $(LUA_LIBS) $(CURL_LIBS) -lm

$(FUZZ_BUILD)/fuzz_httpd: fuzz/fuzz_httpd.c fuzz/harness.h csrc/httpd.c csrc/httpd_faults.c $(HTTPD_HDR)
	@mkdir -p $(dir $@)
	$(SAN_CC) -O1 -g $(FUZZ_FLAGS) -Wall -Wextra -std=c99 -D_POSIX_C_SOURCE=200809L -I$(LUA_INCDIR) -Icsrc $(MHD_CFLAGS) \
	  -o $@ $< $(LUA_LIBS) $(MHD_LIBS) -lm

fuzz-build: san-deps
	@$(MAKE) --no-print-directory -s $(FUZZ_BINS)

fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh fuzz $(FUZZ_BUILD) $(FUZZ_TARGETS)

fuzz-regress: fuzz-build
	@fuzz/run.sh regress $(FUZZ_BUILD) $(FUZZ_TARGETS)
