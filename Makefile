# thingspace-listener: build, run, test, benchmark, fuzz, install.
SHELL := /bin/bash
SWIFT ?= swift
CONFIG ?= config/thingspace-listener.json
PREFIX ?= /usr/local
DESTDIR ?=

# Debian packages each goal needs; `make deps-*` installs the missing ones.
RUN_PACKAGES := libcurl4-openssl-dev libsqlite3-dev sqlite3 libpq-dev
TEST_PACKAGES := $(RUN_PACKAGES) curl systemd postgresql
BENCH_PACKAGES := $(RUN_PACKAGES) wrk nginx-light curl time postgresql
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "Installing missing packages:" $$missing; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

.PHONY: all build release run test test-tools lint format check-units bench fuzz install uninstall clean deps-run deps-test deps-bench deps-python

all: build

deps-run:
	$(call apt_install,$(RUN_PACKAGES))
deps-test:
	$(call apt_install,$(TEST_PACKAGES))
deps-bench:
	$(call apt_install,$(BENCH_PACKAGES))
deps-python:
	$(call apt_install,python3 python3-venv)

# The Standard Webhooks reference library (PyPI standardwebhooks) in a venv under .build, for the
# tests that hold our signing and verifying against it (Tests/Tools/standardwebhooks_check.py).
# Made again whenever it cannot import that version; Debian's python3-venv when venv is missing.
PYTHON ?= python3
PYENV := .build/pyenv
STANDARDWEBHOOKS_VERSION := 1.1.0
STANDARDWEBHOOKS_PYTHON := $(CURDIR)/$(PYENV)/bin/python
test-tools:
	@$(STANDARDWEBHOOKS_PYTHON) -c 'import sys, standardwebhooks; sys.exit(standardwebhooks.__version__ != "$(STANDARDWEBHOOKS_VERSION)")' 2>/dev/null || { \
		python=$(PYTHON); \
		if ! $$python -c 'import venv, ensurepip' 2>/dev/null; then \
			$(MAKE) --no-print-directory deps-python; \
			$$python -c 'import venv, ensurepip' 2>/dev/null || python=/usr/bin/python3; \
		fi; \
		echo "Installing standardwebhooks $(STANDARDWEBHOOKS_VERSION) into $(PYENV)"; \
		rm -rf $(PYENV) && $$python -m venv $(PYENV) && \
		$(PYENV)/bin/python -m pip install --quiet --disable-pip-version-check "standardwebhooks==$(STANDARDWEBHOOKS_VERSION)"; \
	}

build: deps-run
	$(SWIFT) build

# The Swift runtime and Foundation linked statically: the service maps only the parts it uses
# (peak RSS about 6 MB lower, see bench/RESULTS.md) and needs no Swift toolchain where it runs.
RELEASE_FLAGS := -c release --static-swift-stdlib

release: deps-run
	$(SWIFT) build $(RELEASE_FLAGS)

# The whole way: the sandbox (in the service) sends callbacks, the listener stores them and
# delivers each, signed, to `receive-test` on port 9400 (config/thingspace-listener.json's "demo"
# destination), which verifies and prints it. Ctrl-C stops both.
DEMO_WEBHOOK_SECRET := whsec_ZGVtby1vbmx5LXNlY3JldC1mb3ItbWFrZS1ydW4=
run: release
	mkdir -p var
	@bin=$$($(SWIFT) build $(RELEASE_FLAGS) --show-bin-path)/thingspace-listener; \
	THINGSPACE_LISTENER_RECEIVE_SECRET=$(DEMO_WEBHOOK_SECRET) $$bin receive-test --port 9400 & receiver=$$!; \
	trap 'kill $$receiver 2>/dev/null; wait $$receiver 2>/dev/null' EXIT; \
	$$bin serve --config $(CONFIG)

test: deps-test test-tools check-units lint
	$(SWIFT) build --build-tests
	@# The log's tail repeats every failure, so a truncated CI log still names them. Suites run one
	@# after another: the load and fault trials would otherwise starve timing-bounded tests beside them
	@# on a 2-core machine (about 2 minutes in all).
	@# STANDARDWEBHOOKS_PYTHON and REQUIRE_STANDARDWEBHOOKS: the reference-library tests run, and fail without it.
	@set -o pipefail; THINGSPACE_LISTENER_BIN=$$($(SWIFT) build --show-bin-path)/thingspace-listener \
		STANDARDWEBHOOKS_PYTHON=$(STANDARDWEBHOOKS_PYTHON) REQUIRE_STANDARDWEBHOOKS=1 \
		$(SWIFT) test --skip-build --no-parallel 2>&1 | tee .build/test.log || { \
		echo "== Failures:"; grep -aE '✘|error:|fatal' .build/test.log | tail -60; exit 1; }

# The style of .swift-format, checked (never rewritten) by `make test`; `make format` applies it.
FORMAT_PATHS := Package.swift Sources Tests bench/Server bench/ParserBench bench/NaivePostgres Fuzz
lint:
	$(SWIFT) format lint --strict --parallel -r $(FORMAT_PATHS)
format:
	$(SWIFT) format format --in-place --parallel -r $(FORMAT_PATHS)

# systemd-analyze security (exposure ≤ 1.2) and verify, offline.
check-units: deps-test
	systemd/check

bench: deps-bench release
	bench/run

fuzz:
	Fuzz/run $(FUZZ_SECONDS)

# Installs the release binary, the systemd units (ExecStart pointed at the
# installed binary) and the example configuration. DESTDIR for packaging.
BINDIR := $(PREFIX)/bin
UNITDIR ?= /etc/systemd/system
CONFDIR ?= /etc/thingspace-listener
UNITS := thingspace-listener.service thingspace-listener.socket thingspace-listener-admin.socket

install: release
	install -D -m 0755 "$$($(SWIFT) build $(RELEASE_FLAGS) --show-bin-path)/thingspace-listener" "$(DESTDIR)$(BINDIR)/thingspace-listener"
	install -d "$(DESTDIR)$(UNITDIR)"
	for unit in $(UNITS); do \
		sed 's|/usr/local/bin/thingspace-listener|$(BINDIR)/thingspace-listener|g' systemd/$$unit > "$(DESTDIR)$(UNITDIR)/$$unit" && chmod 0644 "$(DESTDIR)$(UNITDIR)/$$unit"; \
	done
	[ -f "$(DESTDIR)$(CONFDIR)/thingspace-listener.json" ] || \
		install -D -m 0644 config/production.json "$(DESTDIR)$(CONFDIR)/thingspace-listener.json"
	@echo "Installed. Next: edit $(CONFDIR)/thingspace-listener.json, add secrets (see README, Deployment), then"
	@echo "  systemctl daemon-reload && systemctl enable --now thingspace-listener.service"

uninstall:
	rm -f "$(DESTDIR)$(BINDIR)/thingspace-listener"
	for unit in $(UNITS); do rm -f "$(DESTDIR)$(UNITDIR)/$$unit"; done
	@echo "Left in place: $(CONFDIR) (configuration) and /var/lib/thingspace-listener (received callbacks)."

clean:
	rm -rf .build .build-* var
