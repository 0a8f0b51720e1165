#!/usr/bin/env bash
# The demo's build (`make demo`: no TLS, PostgreSQL or OTLP trait, docs/dependencies.md) refuses at start what it
# cannot do, with an error that names the build: a postgres:// token store, an https Mio, span export.
#   scripts/check-demo-build.sh [path to that mioctx]   (default .build/debug/mioctx, right after `make demo`)
set -uo pipefail
bin="${1:-.build/debug/mioctx}"
failed=0
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# Runs the command after the pattern; its output must contain the pattern.
expect() {
    local what="$1" pattern="$2" output
    shift 2
    output="$(timeout 60 "$@" 2>&1)"
    if [[ "$output" == *"$pattern"* ]]; then
        echo "check-demo-build: ok: $what"
    else
        echo "check-demo-build: FAILED: $what: expected \"$pattern\", got: $output" >&2
        failed=1
    fi
}
export MIO_CLIENT_ID=demo MIO_CLIENT_SECRET=demo-secret MIO_REDIRECT_URL=https://app.example.com/oauth/callback
MIOCTX_TOKEN_KEYS="$("$bin" tokens keygen)" || { echo "check-demo-build: $bin tokens keygen failed" >&2; exit 1; }
export MIOCTX_TOKEN_KEYS
echo '{"id":"job-1","userId":"user-1","query":"q"}' > "$tmp/jobs.jsonl"
expect "a postgres:// token store" "no PostgreSQL token store" \
    "$bin" config check --token-store postgres://mioctx:pw@127.0.0.1:5432/mioctx
expect "an https Mio (the default mio.apiURL)" "no TLS for an https URL" \
    "$bin" enrich --input "$tmp/jobs.jsonl" --output "$tmp/results.jsonl" --token-store "sqlite:$tmp/tokens.sqlite"
expect "span export" "no OTLP export" env OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:4318/v1/traces \
    "$bin" run --mio-api-url http://127.0.0.1:9 --kafka-bootstrap-servers 127.0.0.1:1 \
    --token-store "sqlite:$tmp/tokens.sqlite" --http-port 0
exit "$failed"
