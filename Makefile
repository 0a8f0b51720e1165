# mioctx: the two commands of the README, and their parts.
SWIFT ?= swift
# bash: the test recipe reads PIPESTATUS.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help deps deps-demo build build-demo build-release test test-asan demo clean

help:
	@echo "make demo    run mioctx end to end on embedded defaults (installs what is missing; a debug build of mioctx without TLS, PostgreSQL and OTLP)"
	@echo "make test    build and run every test (installs what is missing, starts a throwaway PostgreSQL)"
	@echo "make build   debug build;  make build-release   release build"
	@echo "make test-asan   every test under AddressSanitizer (a build of its own in .build/asan, about 5 minutes)"

deps:
	@scripts/install-deps.sh

# The demo installs and builds only what it runs: librdkafka's and SQLite's headers, and the debug mioctx
# executable without the test targets and without the package's three traits (Package.swift): TLS (swift-nio-ssl and
# its BoringSSL), PostgreSQL (postgres-nio) and OTLP (swift-otel, swift-protobuf, AsyncHTTPClient, swift-nio-http2),
# the heaviest dependencies to compile and none of which the demo uses (it talks to the simulator over HTTP, keeps
# the tokens in SQLite and exports no span). That binary says so if asked for an https URL, a postgres:// store or
# span export. `make test` then builds in the same .build/debug with every trait: it reuses every dependency the
# demo built and rebuilds the package's own modules. Debug is fast enough for the demo (its 2,000 jobs wait on the
# simulator's latency); benchmarks and the image build in release. `--force-resolved-versions`: a resolution without
# the traits would otherwise rewrite Package.resolved without the pins only they need (swift-otel, swift-protobuf...),
# and the next build with them would resolve those afresh instead of from the pins.
deps-demo:
	@scripts/install-deps.sh demo

build-demo: deps-demo
	$(SWIFT) build --product mioctx --disable-default-traits --force-resolved-versions

build: deps
	$(SWIFT) build --build-tests

build-release: deps
	$(SWIFT) build -c release --product mioctx

# The OAuth connect flow is also tested in a real browser (tests/browser/connect_flow.py: headless Chromium driven by
# Selenium against `mioctx run` and `mioctx sim`), after the Swift tests.
# The PostgreSQL token-store tests need a server: scripts/test-postgres.sh starts a throwaway one on
# loopback and prints its URL. When the run fails, scripts/test-report.sh ends the output with the failures, the
# tests a crash interrupted and the crashed thread's frames, so that a short tail of CI's log names the cause.
test: build
	@if [ -x scripts/test-postgres.sh ]; then \
		url=$$(scripts/test-postgres.sh) && export MIOCTX_TEST_POSTGRES_URL="$$url"; \
	fi; \
	$(SWIFT) test --skip-build --disable-xctest 2>&1 | tee .build/test-output.txt; \
	status=$${PIPESTATUS[0]}; \
	if [ "$$status" -ne 0 ]; then scripts/test-report.sh .build/test-output.txt; fi; \
	python3 tests/browser/connect_flow.py .build/debug/mioctx || status=1; \
	scripts/check-deploy.sh || status=1; \
	exit "$$status"

# The same tests with AddressSanitizer, for changes that touch C interop (librdkafka, posix_spawn): a read past
# a buffer that happens not to crash is reported on every run. Not part of CI (it doubles the build time).
test-asan: deps
	$(SWIFT) build --build-tests --sanitize=address --scratch-path .build/asan
	@if [ -x scripts/test-postgres.sh ]; then \
		url=$$(scripts/test-postgres.sh) && export MIOCTX_TEST_POSTGRES_URL="$$url"; \
	fi; \
	ASAN_OPTIONS=detect_leaks=0 $(SWIFT) test --skip-build --disable-xctest --sanitize=address --scratch-path .build/asan

demo: build-demo
	.build/debug/mioctx demo $(DEMO_FLAGS)

clean:
	rm -rf .build
