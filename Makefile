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
#   make bench-ctl    porticoctl over a 200,000-record log

CC	?= cc
BUILD	?= build
PKGS	 = libzmq msgpack lmdb inih libcurl jansson yaml-0.1
CFLAGS	?= -O2 -g
CFLAGS	+= -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Icommon \
	   $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(EXTRA_CFLAGS)
LDLIBS	+= $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LDFLAGS	+= $(EXTRA_LDFLAGS)

COMMON	 = log valid addr event config proxyuser bus store daemon
DAEMONS	 = watcherd allocd renderd applyd

COMMON	+= fsafe
COMMON_OBJS = $(COMMON:%=$(BUILD)/obj/common/%.o)
BINS	 = $(DAEMONS:%=$(BUILD)/bin/%)
TOOLS	 = porticoctl
BINS	+= $(TOOLS:%=$(BUILD)/bin/%)
UNITS	 = test_event test_store test_alloc test_envoy test_valid test_addr
UNIT_BINS = $(UNITS:%=$(BUILD)/tests/%)

PY	 = /usr/bin/python3
SAN	 = -fsanitize=address,undefined -fno-omit-frame-pointer \
	   -fno-sanitize-recover=undefined

.PHONY: all asan test unit golden golden-update e2e run deps clean bench-alloc \
	bench-watch bench-converge bench-ctl
all: $(BINS) $(UNIT_BINS)

$(BUILD)/obj/%.o: %.c $(wildcard common/*.h) $(wildcard */*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

define daemon_rule
$(BUILD)/bin/$(1): $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard $(1)/*.c)) \
    $(COMMON_OBJS)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach d,$(DAEMONS),$(eval $(call daemon_rule,$(d))))

# Tools: built like the daemons, from common/ and their own folder only.
$(foreach t,$(TOOLS),$(eval $(call daemon_rule,$(t))))

# Unit tests link the daemon file they test, minus its main().
$(BUILD)/tests/test_alloc: $(BUILD)/obj/tests/unit/test_alloc.o \
    $(BUILD)/obj/allocd/alloc.o $(BUILD)/obj/allocd/hosts.o \
    $(BUILD)/obj/allocd/limits.o $(COMMON_OBJS)
$(BUILD)/tests/test_envoy: $(BUILD)/obj/tests/unit/test_envoy.o \
    $(BUILD)/obj/applyd/envoy.o $(BUILD)/obj/applyd/file.o $(COMMON_OBJS)
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

# The whole suite, under the normal build and then under ASan/UBSan.
test: deps
	$(MAKE) all
	$(MAKE) asan
	$(MAKE) unit
	$(MAKE) BUILD=build/asan unit
	$(MAKE) golden
	$(MAKE) BUILD=build/asan golden
	PORTICO_BIN=$(CURDIR)/build/asan/bin $(PY) -m pytest -q \
	    -p no:cacheprovider tests/sim tests/e2e

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

clean:
	rm -rf build
