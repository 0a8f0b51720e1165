# mioctx: the two commands of the README, and their parts.
SWIFT ?= swift
# bash: the test recipe reads PIPESTATUS.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help deps build build-release test demo clean

help:
	@echo "make demo    run mioctx end to end on embedded defaults (installs what is missing)"
	@echo "make test    build and run every test (installs what is missing, starts a throwaway PostgreSQL)"
	@echo "make build   debug build;  make build-release   release build"

deps:
	@scripts/install-deps.sh

build: deps
	$(SWIFT) build --build-tests

build-release: deps
	$(SWIFT) build -c release --product mioctx

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
	exit "$$status"

demo: build-release
	.build/release/mioctx demo $(DEMO_FLAGS)

clean:
	rm -rf .build
