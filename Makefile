# Entry points: make demo | make test | make natmod ARCH=armv6m|x64 | make pyshim | make device | make bench
# Each target installs what it needs on a fresh Debian machine (root or sudo).
SHELL := /bin/bash
ARCH ?= x64
BUILD := build
VENV := .venv
PY := $(abspath $(VENV))/bin/python
MPY_VERSION := 1.1.1
MPY_DIR := $(abspath $(BUILD))/mpy-cross-v6-3-$(MPY_VERSION)/micropython
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: all test demo natmod pyshim device bench toolchain venv clean

all: natmod pyshim

# --- what the builds need -------------------------------------------------
toolchain: $(BUILD)/.toolchain
$(BUILD)/.toolchain:
	command -v arm-none-eabi-gcc >/dev/null && [ -f /usr/lib/arm-none-eabi/include/assert.h ] || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends \
	      gcc-arm-none-eabi libnewlib-arm-none-eabi git zstd; }
	rustup target add thumbv6m-none-eabi
	mkdir -p $(BUILD) && touch $@

venv: $(VENV)/.stamp
$(VENV)/.stamp: requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

# MicroPython's natmod build files ship in the PyPI sdist of mpy-cross-v6-3 (MicroPython 1.23, ABI 6.3).
$(MPY_DIR)/py/dynruntime.mk: | $(VENV)/.stamp
	mkdir -p $(BUILD)/dl
	$(VENV)/bin/pip download -q --no-deps --no-binary :all: mpy-cross-v6-3==$(MPY_VERSION) -d $(BUILD)/dl
	tar -xzf $(BUILD)/dl/mpy_cross_v6_3-$(MPY_VERSION).tar.gz -C $(BUILD)
	touch $@
