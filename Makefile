# portico — build, test, run.
#
#   make            build the four daemons into build/bin
#   make asan       the same with AddressSanitizer and UBSan, into build/asan
#   make test       install what is missing, build, run unit and e2e tests
#   make golden     renderd's output against tests/golden/*.out
#   make golden-update  rewrite those .out files (for a change that is meant)
#   make run        install what is missing, build, run the demo fleet
#   make bench-alloc  allocd's throughput, latency, start-up and store size
#   make bench-watch  watcherd: 200 clusters x 50 VirtualServices, sync and churn
#   make fuzz       each libFuzzer harness for FUZZ_SECONDS, after its regressions
#   make bench-ctl    porticoctl over a 200,000-record log

CC	?= cc
BUILD	?= build
PKGS	 = libzmq msgpack lmdb inih libcurl jansson yaml-0.1 libcrypto
CFLAGS	?= -O2 -g
CFLAGS	+= -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Icommon \
	   $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(EXTRA_CFLAGS)
LDLIBS	+= $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LDFLAGS	+= $(EXTRA_LDFLAGS)

COMMON	 = log valid addr event config proxyuser bus store daemon
DAEMONS	 = watcherd allocd renderd applyd

COMMON	+= fsafe
COMMON	+= confdiff
COMMON	+= health
COMMON_OBJS = $(COMMON:%=$(BUILD)/obj/common/%.o)
BINS	 = $(DAEMONS:%=$(BUILD)/bin/%)
TOOLS	 = porticoctl
BINS	+= $(TOOLS:%=$(BUILD)/bin/%)
UNITS	 = test_event test_store test_alloc test_envoy test_valid test_addr
UNITS	+= test_rtable
UNIT_BINS = $(UNITS:%=$(BUILD)/tests/%)

PY	 = /usr/bin/python3
SAN	 = -fsanitize=address,undefined -fno-omit-frame-pointer \
	   -fno-sanitize-recover=undefined

.PHONY: all asan test unit golden golden-update e2e run deps clean bench-alloc \
	bench-watch bench-converge bench-ctl fuzz fuzz-build
all: $(BINS) $(UNIT_BINS)

$(BUILD)/obj/%.o: %.c $(wildcard common/*.h) $(wildcard */*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# -V: the version, from git at build time ("unknown" outside git), as a
# header rewritten only when it changes, so nothing goes stale and nothing
# rebuilds for nothing.
VERSION	:= $(shell git describe --always --dirty --tags 2>/dev/null | \
	   tr -cd 'A-Za-z0-9._+-')
$(BUILD)/gen/version.h: FORCE
	@mkdir -p $(dir $@)
	@echo '#define PORTICO_VERSION "$(or $(VERSION),unknown)"' > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi
$(BUILD)/obj/common/daemon.o: $(BUILD)/gen/version.h
$(BUILD)/obj/common/daemon.o: CFLAGS += -I$(BUILD)/gen
.PHONY: FORCE
FORCE:

define daemon_rule
$(BUILD)/bin/$(1): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard $(1)/*.c)) \
    $(COMMON_OBJS)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach d,$(DAEMONS),$(eval $(call daemon_rule,$(d))))

# applyd renders its proxy's files from renderd's route table with renderd's
# own renderers (the ones renderd -T and the golden files test).
RTABLE_OBJS = $(BUILD)/obj/renderd/routes.o $(BUILD)/obj/renderd/haproxy.o \
	$(BUILD)/obj/renderd/nginx.o $(BUILD)/obj/renderd/envoy.o \
	$(BUILD)/obj/renderd/state.o
$(BUILD)/bin/applyd: $(RTABLE_OBJS)
$(BUILD)/obj/applyd/%.o: CFLAGS += -Irenderd

# Tools: built like the daemons, from common/ and their own folder only.
$(foreach t,$(TOOLS),$(eval $(call daemon_rule,$(t))))

# Unit tests link the daemon file they test, minus its main().
$(BUILD)/tests/test_alloc: $(BUILD)/obj/tests/unit/test_alloc.o \
    $(BUILD)/obj/allocd/alloc.o $(BUILD)/obj/allocd/hosts.o \
    $(BUILD)/obj/allocd/limits.o $(BUILD)/obj/allocd/proof.o $(COMMON_OBJS)
$(BUILD)/tests/test_envoy: $(BUILD)/obj/tests/unit/test_envoy.o \
    $(BUILD)/obj/applyd/envoy.o $(BUILD)/obj/applyd/file.o $(COMMON_OBJS)
$(BUILD)/tests/test_rtable: $(BUILD)/obj/tests/unit/test_rtable.o \
    $(BUILD)/obj/applyd/plan.o $(BUILD)/obj/applyd/hapruntime.o \
    $(RTABLE_OBJS) $(COMMON_OBJS)
$(BUILD)/obj/tests/unit/test_rtable.o $(BUILD)/obj/tests/unit/test_envoy.o: \
    CFLAGS += -Irenderd -Iapplyd
$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(COMMON_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

asan:
	$(MAKE) BUILD=build/asan EXTRA_CFLAGS="$(SAN)" EXTRA_LDFLAGS="$(SAN)"

deps:
	@sh scripts/deps.sh

unit: all
	@for t in $(UNIT_BINS); do echo "== $$t"; $$t || exit 1; done

# renderd -T <case>.in against <case>.out, byte for byte.
golden: all
	PORTICO_BIN=$(CURDIR)/$(BUILD)/bin $(PY) -m pytest -q \
	    -p no:cacheprovider tests/golden

golden-update: all
	PORTICO_GOLDEN_UPDATE=1 PORTICO_BIN=$(CURDIR)/$(BUILD)/bin \
	    $(PY) -m pytest -q -p no:cacheprovider tests/golden

e2e: all
	$(PY) -m pytest -q -p no:cacheprovider tests/sim tests/e2e

# The whole suite, under the normal build and then under ASan/UBSan.  The
# end-to-end files run two at a time (each file on one worker, so a module's
# fleet stays whole; every test has its own loopback address and ports);
# the crash tests, whose kill loops are bounded by time, run alone.
test: deps
	$(MAKE) all
	$(MAKE) asan
	$(MAKE) unit
	$(MAKE) BUILD=build/asan unit
	$(MAKE) golden
	$(MAKE) BUILD=build/asan golden
	PORTICO_BIN=$(CURDIR)/build/asan/bin $(PY) -m pytest -q \
	    -p no:cacheprovider -n 2 --dist loadfile tests/sim tests/e2e \
	    --ignore tests/e2e/test_crash.py
	PORTICO_BIN=$(CURDIR)/build/asan/bin $(PY) -m pytest -q \
	    -p no:cacheprovider tests/e2e/test_crash.py
	$(MAKE) fuzz FUZZ_SECONDS=10

run: deps all
	$(PY) scripts/demo.py

# Benchmarks: JSON lines on stdout; BENCHMARKS.md keeps the latest figures.
$(BUILD)/bench/bench_alloc: $(BUILD)/obj/tests/bench/bench_alloc.o \
    $(COMMON_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

bench-alloc: deps $(BUILD)/bin/allocd $(BUILD)/bench/bench_alloc
	@d=$$(mktemp -d /tmp/pt-bench-XXXXXX) && \
	    $(BUILD)/bench/bench_alloc $(BUILD)/bin/allocd $$d; rc=$$?; \
	    rm -rf $$d; exit $$rc

# watcherd and allocd against simulated API servers on loopback (no proxy).
bench-watch: deps $(BUILD)/bin/watcherd $(BUILD)/bin/allocd
	PORTICO_BIN=$(CURDIR)/$(BUILD)/bin $(PY) tests/bench/bench_watch.py

# porticoctl over a log as long as the default compaction policy allows.
bench-ctl: deps $(BUILD)/bin/porticoctl
	PORTICO_BIN=$(CURDIR)/$(BUILD)/bin $(PY) tests/bench/bench_ctl.py

# The whole pipeline and HAProxy: a new route's first byte, live and reloaded.
bench-converge: deps all
	PORTICO_BIN=$(CURDIR)/$(BUILD)/bin $(PY) tests/bench/bench_converge.py

# libFuzzer harnesses (tests/fuzz), built with clang into build/fuzz: the
# parsers of what comes from outside.  watcherd's HTTP seam is replaced at
# link time (--wrap) by tests/fuzz/fake_http.c, which hands the harness
# every request to answer.
CLANG	?= clang
FUZZ_SECONDS ?= 60
FUZZ_BUILD = build/fuzz
FUZZERS	 = event event_json watch pks kubeconfig hapruntime
# watcherd's cap on one watch event is 4 KiB here: what is over it is
# then an input of a few kilobytes, not of 4 MiB.
FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g -O1 \
	   -Icommon -Iwatcherd -Iapplyd -Irenderd -Itests/fuzz \
	   -DMAX_EVENT_BYTES=4096u \
	   -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	   -fno-omit-frame-pointer $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_COMMON = $(COMMON:%=$(FUZZ_BUILD)/obj/common/%.o)
FUZZ_WATCHERD = $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(filter-out \
	   watcherd/watcherd.c,$(wildcard watcherd/*.c))) \
	   $(FUZZ_BUILD)/obj/tests/fuzz/fake_http.o \
	   $(FUZZ_BUILD)/obj/tests/fuzz/fake_watcherd.o
FUZZ_WRAP = -Wl,--wrap=http_start,--wrap=http_cancel

$(FUZZ_BUILD)/obj/%.o: %.c $(wildcard common/*.h) $(wildcard */*.h) \
    $(wildcard tests/fuzz/*.h)
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -c -o $@ $<

# daemon.o prints the version (-V): the same generated header as above.
$(FUZZ_BUILD)/obj/common/daemon.o: $(BUILD)/gen/version.h
$(FUZZ_BUILD)/obj/common/daemon.o: FUZZ_CFLAGS += -I$(BUILD)/gen

$(FUZZ_BUILD)/fuzz_event: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_event.o
$(FUZZ_BUILD)/fuzz_event_json: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_event_json.o
$(FUZZ_BUILD)/fuzz_kubeconfig: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_kubeconfig.o \
    $(FUZZ_WATCHERD)
$(FUZZ_BUILD)/fuzz_watch: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_watch.o \
    $(FUZZ_WATCHERD)
$(FUZZ_BUILD)/fuzz_pks: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_pks.o \
    $(FUZZ_WATCHERD)
$(FUZZ_BUILD)/fuzz_hapruntime: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_hapruntime.o \
    $(FUZZ_BUILD)/obj/applyd/hapruntime.o \
    $(RTABLE_OBJS:$(BUILD)/obj/%=$(FUZZ_BUILD)/obj/%)
$(FUZZ_BUILD)/fuzz_%: $(FUZZ_COMMON)
	$(CLANG) $(FUZZ_CFLAGS) $(FUZZ_WRAP) -o $@ $^ $(LDLIBS) -lpthread

.PRECIOUS: $(FUZZ_BUILD)/obj/%.o
fuzz-build: $(FUZZERS:%=$(FUZZ_BUILD)/fuzz_%)

# Each harness replays tests/fuzz/regress/<h>/, then fuzzes from
# tests/fuzz/corpus/<h>/ for FUZZ_SECONDS; one JSON line per figure.
fuzz: deps fuzz-build
	$(PY) tests/fuzz/run.py --bin $(FUZZ_BUILD) --seconds $(FUZZ_SECONDS) \
	    $(FUZZERS)

clean:
	rm -rf build
