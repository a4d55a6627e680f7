# Entry points. Everything is CMake underneath; this file only names the
# jobs and makes sure the packages are there first.
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_TIME  ?= 300
JOBS       ?= $(shell nproc)
MAKEFLAGS  += --no-print-directory

.PHONY: all deps build build-asan check check-plain check-asan demo explore bench bench-quick soak fuzz install clean build-fuzz check-fuzz

all: build

deps:
	@scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPX_TEST_HOOKS=ON >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

build-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPX_SANITIZE=ON -DPX_TEST_HOOKS=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)

# The whole suite twice: the plain build (plus valgrind on the main path)
# and the ASan+UBSan build. The two runs share the loopback test world, so
# they run one after the other.
check: check-plain check-asan check-fuzz

check-plain: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

check-asan: build-asan
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j$(JOBS)

# The libFuzzer targets of tests/fuzz: clang, a configuration of their own
# (the gcc builds are unaffected).
build-fuzz:
	@scripts/install-deps.sh --fuzz
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DPX_FUZZ=ON -DPX_TEST_HOOKS=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j$(JOBS) --target px-fuzzers

# Each target for a short, fixed number of runs over its corpus (every
# crash found so far is in it): regressions fail the check.
check-fuzz: build-fuzz
	cd $(FUZZ_BUILD) && ctest --output-on-failure -j$(JOBS)

# Each target for FUZZ_TIME seconds: executions, coverage and findings.
fuzz: build-fuzz
	@scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_TIME)

demo: build
	@scripts/demo.sh $(BUILD)

# The demo's database served on 127.0.0.1:8080 until Ctrl-C (the demo's own
# collector is gone with its namespaces).
explore: build
	@scripts/explore.sh $(BUILD)

# Every benchmark at full size, one after another, then one table of every
# ratio against its target; bench-quick runs each at a tenth of the size.
bench: build
	@scripts/install-deps.sh --bench
	@bench/run-all $(BUILD)

bench-quick: build
	@scripts/install-deps.sh --bench
	@bench/run-all --quick $(BUILD)

# Load and faults at full size (tests/load): 1,000 concurrent clients,
# hostile clients, 20 kill -9 cycles, a disk-full spool, a 20,000-target
# agent soak with valgrind on a shorter run. `make check` runs them small.
soak: build
	@tests/load/soak.sh $(BUILD)

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
