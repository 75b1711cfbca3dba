# Build, test and run the pipedrive Lua module.
# `make` builds build/pipedrive/{core,httpd}.so for $(LUA_VERSION);
# `make test` runs the busted suite; `make demo` runs the quickstart against a sandbox.

LUA_VERSION ?= 5.4
LUA         ?= lua$(LUA_VERSION)
LUA_INCDIR  ?= /usr/include/lua$(LUA_VERSION)
BUSTED      ?= busted

CURL_CFLAGS := $(shell pkg-config --cflags libcurl 2>/dev/null || curl-config --cflags)
CURL_LIBS   := $(shell pkg-config --libs libcurl 2>/dev/null || curl-config --libs)
MHD_CFLAGS  := $(shell pkg-config --cflags libmicrohttpd 2>/dev/null)
MHD_LIBS    := $(shell pkg-config --libs libmicrohttpd 2>/dev/null || echo -lmicrohttpd)

CFLAGS  ?= -O2 -g
WARN     = -Wall -Wextra -Wshadow -Wpointer-arith -Wcast-qual -Wstrict-prototypes -Wmissing-prototypes
MYCFLAGS = -std=c99 -fPIC -fvisibility=hidden -D_POSIX_C_SOURCE=200809L -I$(LUA_INCDIR) $(WARN)
LIBFLAG ?= -shared

BUILD   ?= build
CORE_SO  = $(BUILD)/pipedrive/core.so
HTTPD_SO = $(BUILD)/pipedrive/httpd.so
CORE_SRC = csrc/core.c $(filter-out csrc/core.c csrc/httpd.c,$(wildcard csrc/*.c)) $(wildcard csrc/*.h)

INST_LIBDIR ?= $(BUILD)/install/lib
INST_LUADIR ?= $(BUILD)/install/lua

.PHONY: all test demo oauth-demo lint clean install deps

all: $(CORE_SO) $(HTTPD_SO)

$(CORE_SO): $(CORE_SRC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(MYCFLAGS) $(CURL_CFLAGS) $(LIBFLAG) -o $@ csrc/core.c $(CURL_LIBS)

$(HTTPD_SO): csrc/httpd.c csrc/compat.h csrc/buf.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(MYCFLAGS) $(MHD_CFLAGS) $(LIBFLAG) -o $@ csrc/httpd.c $(MHD_LIBS)

# The whole suite, end to end against sandboxes on loopback.
# spec/support/summary.lua prints the closing line "N passed, N failed".
test: all
	LUA=$(LUA) $(BUSTED) --lua=$(LUA) -o spec/support/summary.lua spec

demo: all
	LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='$(BUILD)/?.so;;' $(LUA) examples/demo.lua

oauth-demo: all
	sh examples/oauth_demo.sh

lint:
	luacheck -q lua spec bin examples bench
	cppcheck -q --enable=warning,portability --error-exitcode=1 --std=c99 -I$(LUA_INCDIR) csrc

# Used by the rockspec (type = "make") and by hand.
install: all
	mkdir -p $(INST_LIBDIR)/pipedrive $(INST_LUADIR)/pipedrive/sandbox
	cp $(CORE_SO) $(HTTPD_SO) $(INST_LIBDIR)/pipedrive/
	cp lua/pipedrive/*.lua $(INST_LUADIR)/pipedrive/
	cp lua/pipedrive/sandbox/*.lua $(INST_LUADIR)/pipedrive/sandbox/

clean:
	rm -rf $(BUILD)
