# SoundHash — GNU Make. Read top to bottom: what is built, from what, and how it is tested.
#
#   make            build build/soundhash (installs missing Debian packages first)
#   make test       unit tests (cmocka), fuzz-corpus replay and integration tests, plain and
#                   under ASan+UBSan (and the threaded paths under TSan), and test-ops
#   make test-ops   the ops/ files: alert rules (promtool), dashboard, docker-compose.yml and
#                   systemd units checked with real parsers and real processes (< 30 s)
#   make demo       the whole pipeline end to end on a local stack (see README)
#   make bench      benchmarks, printing figures (make bench-edge / bench-lookup / bench-takeover: one
#                   section; make bench-scale: the 10/100/1,000 h curve, not in make bench)
#   make fuzz       libFuzzer builds (clang) of every fuzz target; FUZZ_SECONDS per target
#   make chaos      a long seeded fault storm on a real Kafka cluster (tests/chaos/storm.sh;
#                   CHAOS_SECONDS default 600, CHAOS_SEED repeats a run); 88_chaos is a short one
#   make soak       sustained load for SOAK_MINUTES (default 10): CSV + PNG of throughput, lag
#                   and RSS in build/soak, RSS flat and lag bounded asserted (tests/chaos/soak.sh)
#   make format     clang-format every source file

CC       ?= cc
BUILD    ?= build
SAN      ?= 0
# Every dependency comes through pkg-config.
PKGS     := rdkafka libpq avro-c sndfile fftw3f soxr libzstd lmdb libmicrohttpd jansson libcurl \
            libcrypto
CPPFLAGS += -D_GNU_SOURCE -Icore/engine -Icore/runtime -Icore -Ischemas
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c17 -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wvla -fno-common -pthread -fopenmp-simd
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -pthread
CPPFLAGS += $(shell pkg-config --cflags $(PKGS) 2>/dev/null)

ifeq ($(SAN),1)
CFLAGS   += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
endif
# SAN=tsan: ThreadSanitizer (build/tsan/soundhash) for the threaded paths: tests/integration/
# 89_tsan.sh runs the worker, the edge's HTTP threads and its applier (tests/tsan/).
ifeq ($(SAN),tsan)
CFLAGS   += -O1 -fsanitize=thread -fno-omit-frame-pointer
LDFLAGS  += -fsanitize=thread
endif

# The shared library: core/engine (audio, fingerprinting, matching, the shard and its formats),
# core/runtime (errors, logs, options, clocks, kafka/pg/http/metrics helpers) and the Avro schemas
# codec; headers are included by bare name, both core folders being on the include path.
# Components below depend on it and never on each other.
LIB_SRC  := $(wildcard core/engine/*.c core/runtime/*.c core/*.c schemas/*.c)
# Components: one folder each; each provides `int sh_cmd_<name>(int argc, char **argv)`.
CMD_SRC  := $(wildcard cli/cmd_*.c ingest/*.c broker/*.c workers/*.c replicator/*.c edge/*.c)
MAIN_SRC := cli/main.c
ifeq ($(SAN),tsan) # librdkafka's C11 threads and locks made visible to TSan (see the file)
MAIN_SRC += tests/tsan/c11threads.c
endif
UNIT_SRC := $(wildcard tests/unit/test_*.c)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
BENCH_SRC:= $(wildcard bench/*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CMD_OBJ  := $(CMD_SRC:%.c=$(BUILD)/obj/%.o)
MAIN_OBJ := $(MAIN_SRC:%.c=$(BUILD)/obj/%.o)
LIBA     := $(BUILD)/libsoundhash.a
CMDA     := $(BUILD)/libsoundhash-cmd.a
BIN      := $(BUILD)/soundhash
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
BENCH_BIN:= $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all deps test test-unit test-fuzz test-integration test-ops demo bench bench-edge bench-lookup bench-takeover bench-scale fuzz format \
        clean chaos soak
.DEFAULT_GOAL := all

all: deps
	@$(MAKE) --no-print-directory $(BIN)

# Installs missing Debian packages (apt-get only when something is missing).
deps:
	@ops/install-deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIBA): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(CMDA): $(CMD_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BIN): $(MAIN_OBJ) $(CMDA) $(LIBA)
	$(CC) $(LDFLAGS) -o $@ $(MAIN_OBJ) -Wl,--whole-archive $(CMDA) -Wl,--no-whole-archive $(LIBA) $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(CMDA) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Itests -MMD -MP $(LDFLAGS) -o $@ $< $(CMDA) $(LIBA) $(LDLIBS) -lcmocka

# Fuzz targets built with a replay driver (no libFuzzer needed): they run the saved corpus.
$(BUILD)/fuzz/%: tests/fuzz/%.c tests/fuzz/replay.c $(CMDA) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP $(LDFLAGS) -o $@ $< tests/fuzz/replay.c $(CMDA) $(LIBA) $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(CMDA) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP $(LDFLAGS) -o $@ $< $(CMDA) $(LIBA) $(LDLIBS)

# ---- tests -------------------------------------------------------------------------------------
# `make test` = everything, twice: the optimised build and the ASan+UBSan build. The integration
# tests that run a real Kafka cluster need its jars: fetched through Maven once (ops/kafka.sh).
test: deps
	@ops/kafka.sh fetch > /dev/null
	@$(MAKE) --no-print-directory test-unit test-fuzz BUILD=build SAN=0
	@$(MAKE) --no-print-directory test-unit test-fuzz BUILD=build/asan SAN=1
	@$(MAKE) --no-print-directory build/soundhash BUILD=build SAN=0
	@$(MAKE) --no-print-directory build/asan/soundhash BUILD=build/asan SAN=1
	@$(MAKE) --no-print-directory build/tsan/soundhash BUILD=build/tsan SAN=tsan
	@tests/integration/run.sh build/soundhash build/asan/soundhash
	@$(MAKE) --no-print-directory test-ops

test-unit: $(UNIT_BIN)
	@tests/run-unit.sh $(UNIT_BIN)

test-fuzz: $(FUZZ_BIN)
	@tests/fuzz/replay-all.sh $(BUILD)/fuzz

test-integration: deps
	@ops/kafka.sh fetch > /dev/null
	@$(MAKE) --no-print-directory build/soundhash BUILD=build SAN=0
	@$(MAKE) --no-print-directory build/asan/soundhash BUILD=build/asan SAN=1
	@$(MAKE) --no-print-directory build/tsan/soundhash BUILD=build/tsan SAN=tsan
	@tests/integration/run.sh build/soundhash build/asan/soundhash

# The fault storm and the soak (tests/chaos/): long runs of their own, not part of `make test`
# (88_chaos is the storm's short seeded run there).
chaos: deps
	@ops/kafka.sh fetch > /dev/null
	@$(MAKE) --no-print-directory build/soundhash BUILD=build SAN=0
	@tests/chaos/run.sh build/soundhash

soak: deps
	@ops/install-deps.sh soak
	@$(MAKE) --no-print-directory build/soundhash BUILD=build SAN=0
	@tests/chaos/soak-run.sh build/soundhash

# The operations files (ops/tests/run.sh); its tools come with `ops/install-deps.sh ops`.
test-ops:
	@ops/install-deps.sh ops
	@$(MAKE) --no-print-directory build/soundhash BUILD=build SAN=0
	@ops/tests/run.sh

# ---- demo, bench, fuzz, format ----------------------------------------------------------------
demo: all
	@ops/demo.sh

bench: all $(BENCH_BIN)
	@bench/run.sh

bench-edge: all $(BUILD)/bench/bench_edge_tool
	@bench/bench_edge.sh $(BUILD)/soundhash

bench-lookup: $(BUILD)/bench/bench_lookup
	@bench/bench_lookup.sh $(BUILD)/bench/bench_lookup

bench-takeover: all
	@bench/bench_takeover.sh $(BUILD)/soundhash

# Recognition at 10, 100 and 1,000 hours (distractors from Debian game music; cached in the data dir)
bench-scale: $(BUILD)/bench/bench_scale
	@bench/bench_scale.sh $(BUILD)/bench/bench_scale $(BENCH_SCALE_HOURS)

# libFuzzer builds live in build/libfuzzer (build/fuzz holds the replay builds `make test` runs:
# a libFuzzer binary there would fuzz forever instead of replaying). Each target runs
# FUZZ_SECONDS on its corpus; new inputs and crash reproducers (crash-*, leak-*, timeout-*) are
# written into tests/fuzz/corpus/<target>/, where `make test` replays them.
FUZZ_SECONDS ?= 60
FUZZ_DIR := build/libfuzzer
fuzz: deps
	@$(MAKE) --no-print-directory $(FUZZ_DIR)/libsoundhash.a $(FUZZ_DIR)/libsoundhash-cmd.a \
	  BUILD=$(FUZZ_DIR) CC=clang \
	  CFLAGS="-std=c17 -O1 -g -pthread -fsanitize=fuzzer-no-link,address,undefined"
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  clang $(CPPFLAGS) -O1 -g -fsanitize=fuzzer,address,undefined \
	    -o $(FUZZ_DIR)/$$n $$f $(FUZZ_DIR)/libsoundhash-cmd.a $(FUZZ_DIR)/libsoundhash.a $(LDLIBS) && \
	  mkdir -p tests/fuzz/corpus/$$n && \
	  $(FUZZ_DIR)/$$n -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
	    -artifact_prefix=tests/fuzz/corpus/$$n/ tests/fuzz/corpus/$$n || exit 1; \
	done

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
