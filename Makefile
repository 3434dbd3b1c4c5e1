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
#                     (WATCH_SHARDS=2: split between two watcherd shards)
#   make fuzz       each libFuzzer harness for FUZZ_SECONDS, after its regressions
#   make bench-ctl    porticoctl over a 200,000-record log
#   make bench-curve  the bus with CURVE against ipc://, in one run
#   make bench-ctl-tables  porticoctl clusters/routes/ports, 12,000 owners
#   make bench-pods   each daemon's RSS and CPU in its pod at 10,000 routes
#   make image      the image (daemons, porticoctl, HAProxy) as
#                   portico:<version>, with podman and no registry
#   make install    daemons, porticoctl, man pages, systemd units, example
#                   config (PREFIX=/usr/local, DESTDIR, SYSCONFDIR=/etc)

CC	?= cc
BUILD	?= build
# build/asan is the sanitized build whichever target names it: a
# `make BUILD=build/asan unit` that relinks (a new version header) links
# it with the sanitizers too.
ifeq ($(BUILD),build/asan)
EXTRA_CFLAGS	?= $(SAN)
EXTRA_LDFLAGS	?= $(SAN)
endif
PKGS	 = libzmq msgpack lmdb inih libcurl jansson yaml-0.1 libcrypto \
	   libmicrohttpd
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
COMMON	+= metrics
COMMON	+= loop control
COMMON	+= store_migrate
COMMON	+= keys zap
COMMON_OBJS = $(COMMON:%=$(BUILD)/obj/common/%.o)
BINS	 = $(DAEMONS:%=$(BUILD)/bin/%)
TOOLS	 = porticoctl
BINS	+= $(TOOLS:%=$(BUILD)/bin/%)
UNITS	 = test_event test_store test_alloc test_envoy test_valid test_addr
UNITS	+= test_metrics
UNITS	+= test_loop
UNITS	+= test_compact
UNITS	+= test_job
UNITS	+= test_rtable
UNITS	+= test_hash
UNITS	+= test_keys test_bus
UNIT_BINS = $(UNITS:%=$(BUILD)/tests/%)

PY	 = /usr/bin/python3
SAN	 = -fsanitize=address,undefined -fno-omit-frame-pointer \
	   -fno-sanitize-recover=undefined

.PHONY: all asan test unit golden golden-update e2e run deps clean bench-alloc \
	bench-watch bench-converge bench-ctl bench-ctl-tables fuzz fuzz-build \
	bench-curve
all: $(BINS) $(UNIT_BINS) $(BUILD)/gen/events.py

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
# ...but porticoctl log replay runs today's allocator: allocd's files
# that decide (not its main), as the unit tests link them.
ALLOC_OBJS = $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard allocd/alloc.c \
    allocd/alloc_*.c) allocd/hosts.c allocd/limits.c allocd/proof.c \
    allocd/sni.c)
$(BUILD)/bin/porticoctl: $(ALLOC_OBJS) $(BUILD)/obj/allocd/replay.o

# Unit tests link the daemon file they test, minus its main().
$(BUILD)/tests/test_alloc: $(BUILD)/obj/tests/unit/test_alloc.o \
    $(ALLOC_OBJS) $(COMMON_OBJS)
$(BUILD)/tests/test_compact: $(BUILD)/obj/tests/unit/test_compact.o \
    $(BUILD)/obj/allocd/compact.o $(COMMON_OBJS)
$(BUILD)/tests/test_envoy: $(BUILD)/obj/tests/unit/test_envoy.o \
    $(BUILD)/obj/applyd/envoy.o $(BUILD)/obj/applyd/file.o $(COMMON_OBJS)
$(BUILD)/tests/test_job: $(BUILD)/obj/tests/unit/test_job.o \
    $(BUILD)/obj/applyd/job.o $(COMMON_OBJS)
$(BUILD)/tests/test_rtable: $(BUILD)/obj/tests/unit/test_rtable.o \
    $(BUILD)/obj/applyd/plan.o $(BUILD)/obj/applyd/hapruntime.o \
    $(BUILD)/obj/applyd/hapcli.o $(BUILD)/obj/applyd/slots.o \
    $(RTABLE_OBJS) $(COMMON_OBJS)
$(BUILD)/obj/tests/unit/test_rtable.o $(BUILD)/obj/tests/unit/test_envoy.o \
    $(BUILD)/obj/tests/unit/test_job.o: CFLAGS += -Irenderd -Iapplyd
$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(COMMON_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# The event table for the Python tests (tests/lib/testlib.py imports it):
# written by a program built from common/event.h, never by hand.
$(BUILD)/tests/gen_events: $(BUILD)/obj/tests/gen/gen_events.o $(COMMON_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/gen/events.py: $(BUILD)/tests/gen_events
	@mkdir -p $(dir $@)
	$(BUILD)/tests/gen_events > $@.tmp && mv $@.tmp $@

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
# end-to-end files run three at a time (each file on one worker, so a
# module's fleet stays whole; every test has its own loopback address and
# ports): they mostly wait on their fleets, and two workers kept the two
# cores a quarter busy.  The crash tests, whose kill loops are bounded by
# time, run alone.
test: deps
	$(MAKE) all
	$(MAKE) asan
	$(MAKE) unit
	$(MAKE) BUILD=build/asan unit
	$(MAKE) golden
	$(MAKE) BUILD=build/asan golden
	PORTICO_BIN=$(CURDIR)/build/asan/bin $(PY) -m pytest -q \
	    -p no:cacheprovider -n 3 --dist loadfile tests/sim tests/e2e \
	    --ignore tests/e2e/test_crash.py --durations=12 --timeout 600
	PORTICO_BIN=$(CURDIR)/build/asan/bin $(PY) -m pytest -q \
	    -p no:cacheprovider --timeout 600 tests/e2e/test_crash.py
	$(MAKE) fuzz FUZZ_SECONDS=10

run: deps all
	$(PY) scripts/demo.py

# Benchmarks: JSON lines on stdout; BENCHMARKS.md keeps the latest figures.
$(BUILD)/bench/bench_alloc: $(BUILD)/obj/tests/bench/bench_alloc.o \
    $(COMMON_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

bench-alloc: deps $(BUILD)/bin/allocd $(BUILD)/bench/bench_alloc \
    $(BUILD)/bench/bench_tick
	@d=$$(mktemp -d /tmp/pt-bench-XXXXXX) && \
	    $(BUILD)/bench/bench_alloc $(BUILD)/bin/allocd $$d; rc=$$?; \
	    rm -rf $$d; [ $$rc = 0 ] || exit $$rc; \
	    d=$$(mktemp -d /tmp/pt-bench-XXXXXX) && \
	    $(BUILD)/bench/bench_tick $$d; rc=$$?; rm -rf $$d; exit $$rc

# The allocator alone: a TICK with 70,000 owners waiting (issue 12).
$(BUILD)/bench/bench_tick: $(BUILD)/obj/tests/bench/bench_tick.o \
    $(ALLOC_OBJS) $(COMMON_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The bus with CURVE (tcp:// on loopback) against ipc://: handshakes and
# events/s through allocd's input, allocd and renderd, in one run.
$(BUILD)/bench/bench_curve: $(BUILD)/obj/tests/bench/bench_curve.o \
    $(COMMON_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

bench-curve: deps all $(BUILD)/bench/bench_curve
	@d=$$(mktemp -d /tmp/pt-bench-XXXXXX) && \
	    $(BUILD)/bench/bench_curve $(CURDIR)/$(BUILD)/bin $$d; rc=$$?; \
	    rm -rf $$d; exit $$rc

# watcherd and allocd against simulated API servers on loopback (no proxy).
bench-watch: deps $(BUILD)/bin/watcherd $(BUILD)/bin/allocd
	PORTICO_BIN=$(CURDIR)/$(BUILD)/bin $(PY) tests/bench/bench_watch.py

# porticoctl over a log as long as the default compaction policy allows.
bench-ctl: deps $(BUILD)/bin/porticoctl
	PORTICO_BIN=$(CURDIR)/$(BUILD)/bin $(PY) tests/bench/bench_ctl.py

# porticoctl clusters, routes and ports over 12,000 owners of a real allocd.
bench-ctl-tables: deps $(BUILD)/bin/porticoctl $(BUILD)/bin/allocd
	PORTICO_BIN=$(CURDIR)/$(BUILD)/bin $(PY) tests/bench/bench_ctl_tables.py

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
FUZZERS	 = event event_json watch pks kubeconfig hapruntime capi
# watcherd's cap on one watch event is 4 KiB here: what is over it is
# then an input of a few kilobytes, not of 4 MiB.
FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g -O1 \
	   -Icommon -Iwatcherd -Iapplyd -Irenderd -Itests/fuzz \
	   -DMAX_EVENT_BYTES=4096u \
	   -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	   -fno-omit-frame-pointer $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_COMMON = $(COMMON:%=$(FUZZ_BUILD)/obj/common/%.o)
FUZZ_WATCHERD = $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(filter-out \
	   watcherd/watcherd.c watcherd/obs.c,$(wildcard watcherd/*.c))) \
	   $(FUZZ_BUILD)/obj/tests/fuzz/fake_http.o \
	   $(FUZZ_BUILD)/obj/tests/fuzz/fake_watcherd.o
FUZZ_WRAP = -Wl,--wrap=http_start,--wrap=http_cancel,--wrap=getaddrinfo_a \
	   -Wl,--wrap=gai_error

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
$(FUZZ_BUILD)/fuzz_capi: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_capi.o \
    $(FUZZ_WATCHERD)
$(FUZZ_BUILD)/fuzz_hapruntime: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_hapruntime.o \
    $(FUZZ_BUILD)/obj/applyd/hapruntime.o $(FUZZ_BUILD)/obj/applyd/hapcli.o \
    $(FUZZ_BUILD)/obj/applyd/slots.o \
    $(RTABLE_OBJS:$(BUILD)/obj/%=$(FUZZ_BUILD)/obj/%)
$(FUZZ_BUILD)/fuzz_%: $(FUZZ_COMMON)
	$(CLANG) $(FUZZ_CFLAGS) $(FUZZ_WRAP) -o $@ $^ $(LDLIBS) -lpthread

.PRECIOUS: $(FUZZ_BUILD)/obj/%.o
fuzz-build: $(FUZZERS:%=$(FUZZ_BUILD)/fuzz_%)

# Each harness replays tests/fuzz/regress/<h>/, then fuzzes from
# tests/fuzz/corpus/<h>/ for FUZZ_SECONDS; one JSON line per figure.
fuzz: deps fuzz-build
	$(PY) tests/fuzz/run.py --bin $(FUZZ_BUILD) --seconds $(FUZZ_SECONDS) \
	    --jobs 2 \
	    $(FUZZERS)

# Installation, as operators expect: PREFIX (default /usr/local) and
# DESTDIR.  The daemons go to sbin, porticoctl to bin; the man pages; the
# systemd units with their paths filled in; the example configuration to
# share/examples, and to SYSCONFDIR/portico/portico.conf unless one is
# there (never overwritten; mode 0600, as it will hold secrets: chown it
# to the user the daemons run as).
PREFIX	?= /usr/local
SYSCONFDIR ?= /etc
SBINDIR	 = $(PREFIX)/sbin
BINDIR	 = $(PREFIX)/bin
MANDIR	 = $(PREFIX)/share/man
EXAMPLEDIR = $(PREFIX)/share/examples/portico
UNITDIR	 = $(PREFIX)/lib/systemd/system
MAN5	 = man/portico.conf.5
MAN8	 = man/porticoctl.8 $(DAEMONS:%=man/%.8)
UNITFILES = $(wildcard etc/systemd/*.service etc/systemd/*.target)
INSTALL	?= install

.PHONY: install
install: $(BINS)
	$(INSTALL) -d -m 0755 $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) \
	    $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
	    $(DESTDIR)$(EXAMPLEDIR) $(DESTDIR)$(UNITDIR)
	$(INSTALL) -m 0755 $(DAEMONS:%=$(BUILD)/bin/%) $(DESTDIR)$(SBINDIR)
	$(INSTALL) -m 0755 $(BUILD)/bin/porticoctl $(DESTDIR)$(BINDIR)
	$(INSTALL) -m 0644 $(MAN5) $(DESTDIR)$(MANDIR)/man5
	$(INSTALL) -m 0644 $(MAN8) $(DESTDIR)$(MANDIR)/man8
	$(INSTALL) -m 0644 etc/portico.conf.example etc/supervisord.conf \
	    $(DESTDIR)$(EXAMPLEDIR)
	@mkdir -p $(BUILD)/systemd
	for u in $(UNITFILES); do \
		sed -e 's|@SBINDIR@|$(SBINDIR)|g' \
		    -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' $$u \
		    > $(BUILD)/systemd/$$(basename $$u) || exit 1; \
	done
	$(INSTALL) -m 0644 $(UNITFILES:etc/systemd/%=$(BUILD)/systemd/%) \
	    $(DESTDIR)$(UNITDIR)
	$(INSTALL) -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/portico
	test -e $(DESTDIR)$(SYSCONFDIR)/portico/portico.conf || \
	    $(INSTALL) -m 0600 etc/portico.conf.example \
	    $(DESTDIR)$(SYSCONFDIR)/portico/portico.conf

# The pods of deploy/kubernetes on podman, 40 clusters of 250 routes.
.PHONY: bench-pods
bench-pods: deps all
	PORTICO_BIN=$(CURDIR)/$(BUILD)/bin $(PY) tests/bench/bench_pods.py 40 250

# One image for every pod (deploy/kubernetes): built from build/bin with
# `podman import`, no registry needed; Containerfile makes the same from
# debian:12 where one can be pulled.
.PHONY: image
image: deps all
	CONTAINERS_CONF=$(CURDIR)/tests/pods/containers.conf \
	    sh scripts/image.sh -b $(BUILD)/bin portico:$(or $(VERSION),unknown)

clean:
	rm -rf build
