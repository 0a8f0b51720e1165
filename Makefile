# mioctx: the two commands of the README, and their parts.
SWIFT ?= swift
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
# loopback and prints its URL.
test: build
	@if [ -x scripts/test-postgres.sh ]; then \
		url=$$(scripts/test-postgres.sh) && export MIOCTX_TEST_POSTGRES_URL="$$url"; \
	fi; \
	$(SWIFT) test --skip-build --disable-xctest

demo: build-release
	.build/release/mioctx demo $(DEMO_FLAGS)

clean:
	rm -rf .build
