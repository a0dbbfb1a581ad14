# Entry points: make demo | make test | make natmod ARCH=armv6m|x64 | make pyshim | make device | make bench
.NOTPARALLEL:
# Each target installs what it needs on a fresh Debian machine (root or sudo).
SHELL := /bin/bash
ARCH ?= x64
BUILD := build
VENV := .venv
PY := $(abspath $(VENV))/bin/python
MPY_VERSION := 1.1.1
MPY_DIR := $(abspath $(BUILD))/mpy_cross_v6_3-$(MPY_VERSION)/micropython
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PATH := $(abspath $(VENV))/bin:$(HOME)/.cargo/bin:$(PATH)

.PHONY: all test demo natmod natmod-all pyshim device bench toolchain venv mpy-dir \
        cargo-test pytest check-armv6m clean bench-emu bench-delta bench-all fuzz

all: natmod-all pyshim

# --- what the builds need -------------------------------------------------
# Only what is missing is installed: one Debian package per missing command or file (python3
# without its venv module: python3-venv), so what the machine has is used as it is: a vendor
# Node.js with its own npm (never Debian's `npm` next to it: they conflict), a git in /usr/local.
# Rust comes from rustup (Debian's rustc has no thumbv6m target). Every target goes through this
# step; when nothing is missing it asks apt nothing. docs/toolchain.md says what each piece is for.
#   command or file:Debian package
APT_NEEDS := \
  gcc:gcc \
  /usr/include/assert.h:libc6-dev \
  curl:curl \
  /etc/ssl/certs/ca-certificates.crt:ca-certificates \
  git:git \
  openssl:openssl \
  zstd:zstd \
  node:nodejs \
  npm:npm \
  arm-none-eabi-gcc:gcc-arm-none-eabi \
  arm-none-eabi-objdump:binutils-arm-none-eabi \
  /usr/lib/arm-none-eabi/newlib/thumb/v6-m/nofp/libc.a:libnewlib-arm-none-eabi
# $(call apt_install,packages), for what is missing only (no recommends: ~1.5 GB of ARM libstdc++)
apt_install = { $(SUDO) apt-get update -qq && \
  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(1); }

toolchain:
	@missing=""; for need in $(APT_NEEDS); do \
	  what=$${need%%:*}; \
	  case $$what in /*) [ -e $$what ] ;; *) command -v $$what >/dev/null ;; esac || missing="$$missing $${need#*:}"; \
	done; \
	python3 -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	[ -z "$$missing" ] || { echo "toolchain: installing$$missing"; $(call apt_install,$$missing); }
	@command -v rustup >/dev/null || \
	  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain stable
	@rustup target list --installed | grep -qx thumbv6m-none-eabi || rustup target add thumbv6m-none-eabi

venv: $(VENV)/.stamp
$(VENV)/.stamp: requirements-dev.txt | toolchain
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

# MicroPython's natmod build files ship in the PyPI sdist of mpy-cross-v6-3 (MicroPython 1.23, ABI 6.3).
mpy-dir: $(MPY_DIR)/py/dynruntime.mk
$(MPY_DIR)/py/dynruntime.mk: | $(VENV)/.stamp
	mkdir -p $(BUILD)/dl
	$(VENV)/bin/pip download -q --no-deps --no-binary :all: mpy-cross-v6-3==$(MPY_VERSION) -d $(BUILD)/dl
	tar -xzf $(BUILD)/dl/mpy_cross_v6_3-$(MPY_VERSION).tar.gz -C $(BUILD)
	touch $@

# --- the two bindings ------------------------------------------------------
# Native module: build/$(ARCH)/ota_native.mpy (natmod/Makefile does the work).
# And the second module, build/$(ARCH)/ota_ed25519.mpy: the Ed25519 verifier (signed manifests).
natmod: toolchain $(VENV)/.stamp $(MPY_DIR)/py/dynruntime.mk
	$(MAKE) -C natmod ARCH=$(ARCH) MPY_DIR=$(MPY_DIR) PYTHON=$(PY)
	$(MAKE) -C natmod ARCH=$(ARCH) MOD=ota_ed25519 MPY_DIR=$(MPY_DIR) PYTHON=$(PY)

natmod-all:
	$(MAKE) natmod ARCH=x64
	$(MAKE) natmod ARCH=armv6m

# Every instruction of the armv6m module must be ARMv6-M (32-bit encodings: only bl).
check-armv6m:
	$(MAKE) natmod ARCH=armv6m
	$(MAKE) -C natmod ARCH=armv6m MPY_DIR=$(MPY_DIR) PYTHON=$(PY) check-isa
	$(MAKE) -C natmod ARCH=armv6m MOD=ota_ed25519 MPY_DIR=$(MPY_DIR) PYTHON=$(PY) check-isa

# CPython extension `ota_native` (PyO3) installed into the venv.
pyshim: toolchain $(VENV)/.stamp
	cd pyshim && VIRTUAL_ENV=$(abspath $(VENV)) maturin develop --release -q

# --- tests, demo, device files, benchmarks -----------------------------------
test: natmod-all check-armv6m pyshim device cargo-test pytest

cargo-test: toolchain
	cargo test -p ota_core -p ota_natmod
	cargo test -p ota_core --features ed25519
	cargo test -p ota_natmod --features ed25519-module
	cargo check -p ota_core --target thumbv6m-none-eabi

pytest: $(VENV)/.stamp
	$(PY) -m pytest -q tests

demo: pyshim
	$(MAKE) natmod ARCH=x64
	$(PY) tests/demo.py

# The lean mpy-cross: MicroPython 1.23's (the natmod sdist's sources, .mpy ABI 6.3, loads on
# 1.23+) built with two settings that change only what a loaded module costs in RAM:
#  - constant strings of up to 200 characters become qstrs (interned: 1+2+1 bytes + the text on a
#    32-bit board, 1+2+8 on x64) instead of str objects (a 16/32-byte object + the text rounded to
#    the GC's 16-byte blocks): -1.7 KB for ota.mpy on x64 (stock: only strings <= 10 chars);
#  - no line-number tables (as mpy-cross -X no-source-lines; tracebacks show no line numbers).
LEAN_MPY_CROSS := $(MPY_DIR)/mpy-cross-lean/build/mpy-cross
$(LEAN_MPY_CROSS): $(MPY_DIR)/py/dynruntime.mk | toolchain
	rm -rf $(MPY_DIR)/mpy-cross-lean && cp -r $(MPY_DIR)/mpy-cross $(MPY_DIR)/mpy-cross-lean
	sed -i 's/^#define MICROPY_ENABLE_SOURCE_LINE *(1)/#define MICROPY_ENABLE_SOURCE_LINE (0)/' \
	  $(MPY_DIR)/mpy-cross-lean/mpconfigport.h
	grep -q '^#define MICROPY_ENABLE_SOURCE_LINE (0)' $(MPY_DIR)/mpy-cross-lean/mpconfigport.h
	$(MAKE) -s -C $(MPY_DIR)/mpy-cross-lean CFLAGS_EXTRA=-DMICROPY_ALLOC_PARSE_INTERN_STRING_LEN=200 >/dev/null

# Device files: bytecode for the RP2040 (armv6m native emitter allowed) and for the unix port.
# ota.mpy + main.mpy are the basic update; the ota_*.mpy modules are the optional features.
# Compiled by the lean mpy-cross below: a loaded .mpy then takes less RAM on the board.
DEVICE_MODULES := ota main ota_flatconfig ota_delta ota_hw ota_schedule ota_time ota_app ota_sign ota_cellular ota_lora
device: $(VENV)/.stamp $(BUILD)/ota_ca.der $(LEAN_MPY_CROSS)
	mkdir -p $(BUILD)/device $(BUILD)/unix
	for n in $(DEVICE_MODULES); do \
	  $(LEAN_MPY_CROSS) -march=armv6m -o $(BUILD)/device/$$n.mpy python/$$n.py && \
	  $(LEAN_MPY_CROSS) -o $(BUILD)/unix/$$n.mpy python/$$n.py || exit 1; \
	done
	cp $(BUILD)/ota_ca.der $(BUILD)/device/ && cp $(BUILD)/ota_ca.der $(BUILD)/unix/

# The device's trust store: the roots GitHub's hosts chain to (README, "HTTPS"), from Debian's
# ca-certificates package, as concatenated DER (what MicroPython's tls loads, one at a time).
TRUST_ROOTS := USERTrust_ECC_Certification_Authority USERTrust_RSA_Certification_Authority \
  DigiCert_Global_Root_CA DigiCert_Global_Root_G2 DigiCert_High_Assurance_EV_Root_CA
$(BUILD)/ota_ca.der: Makefile | toolchain
	mkdir -p $(BUILD)
	rm -f $@.tmp; for n in $(TRUST_ROOTS); do \
	  openssl x509 -in /usr/share/ca-certificates/mozilla/$$n.crt -outform DER >> $@.tmp || exit 1; \
	done; mv $@.tmp $@

bench: pyshim
	$(MAKE) natmod ARCH=x64
	$(PY) bench/bench_mpy.py

# armv6m module on the emulated RP2040 (rp2040js cycles at 125 MHz) and its size by part.
bench-emu: pyshim
	$(MAKE) natmod ARCH=armv6m
	$(PY) bench/emu/bench_emu.py
	$(PY) bench/size_mpy.py

# Delta bytes on real release histories, per release step and in total, vs gzip, bsdiff4, detools
# and zstd --patch-from.
bench-delta: pyshim
	$(MAKE) natmod ARCH=x64
	$(VENV)/bin/pip install -q bsdiff4==1.3.2 detools==0.53.0
	$(PY) bench/bench_delta.py --steps --micropython

bench-all: bench bench-emu bench-delta bench-heap bench-heap32

# Smallest -X heapsize for a device's first install (source and .mpy; SCAN=1: the 48k scans).
.PHONY: bench-heap
bench-heap: natmod
	$(PY) bench/heap_update.py $(if $(SCAN),--scan)

# TLS handshakes per first install and one handshake's time against the update's (keep-alive vs a
# connection per request), MicroPython against the loopback TLS server.
.PHONY: bench-handshake
bench-handshake: $(VENV)/.stamp
	$(PY) bench/bench_handshake.py

# Smallest -X heapsize for `import ota` from source: x64 vs 32-bit (the wasm32 build under Pyodide; needs node).
.PHONY: bench-heap32
bench-heap32: toolchain $(VENV)/.stamp $(MPY_DIR)/py/dynruntime.mk
	echo 'int main(void) { return 0; }' | gcc -m32 -x c - -o /dev/null 2>/dev/null || $(call apt_install,gcc-multilib)
	$(PY) bench/heap_import.py --mpy-cross

# cargo-fuzz on the core (nightly): make fuzz [FUZZ_SECONDS=60] (verify: the Ed25519 verifier)
FUZZ_SECONDS ?= 60
fuzz: toolchain
	command -v c++ >/dev/null || $(call apt_install,g++)
	rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
	set -o pipefail; cd fuzz && for t in inflate bspatch pipeline verify; do \
	  cargo +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) 2>&1 | grep -E '^Done|ERROR|panicked' || exit 1; \
	done

clean:
	rm -rf $(BUILD)/x64 $(BUILD)/armv6m $(BUILD)/device $(BUILD)/unix

# Power cuts on real littlefs (a simulated NOR flash): every program/erase of every scenario, 3 cut modes.
.PHONY: powercut-flash
powercut-flash: pyshim
	$(MAKE) natmod ARCH=x64
	$(PY) tests/flash/campaign.py --all

# Fleet simulation (issue 12, item 5): 10,000 devices behind one IP under GitHub's documented rate limits,
# the real ota.py in CPython (virtual clock) and a MicroPython sample against the same model on loopback.
.PHONY: bench-fleet
bench-fleet: $(VENV)/.stamp
	$(PY) bench/bench_fleet.py
