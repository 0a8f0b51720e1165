#!/usr/bin/env bash
# Lints and validates the deployment files (no container engine or cluster runs here):
# - deploy/Dockerfile with hadolint (settings in .hadolint.yaml);
# - deploy/compose.yaml against the Compose Specification's JSON schema (check-jsonschema's vendored copy);
# - each Kubernetes overlay built with `kubectl kustomize` and every object validated against the Kubernetes
#   schemas (kubernetes-validate --strict; custom resources: KEDA, Prometheus Operator, are checked by
#   DeploymentFilesTests);
# - every YAML file under deploy/ with yamllint.
# The tools come from PyPI (scripts/install-deps.sh installs them); kubectl from the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
step() { echo "check-deploy: $*" >&2; }
fail() { echo "check-deploy: FAILED: $*" >&2; status=1; }

step "hadolint deploy/Dockerfile"
hadolint deploy/Dockerfile || fail "hadolint"

step "compose schema"
check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml || fail "compose schema"

for overlay in deploy/kubernetes/overlays/*/; do
    name=$(basename "$overlay")
    step "kubectl kustomize $overlay + kubernetes-validate"
    built=$(mktemp --suffix=.yaml)
    if kubectl kustomize "$overlay" > "$built"; then
        kubernetes-validate --strict --quiet "$built" || fail "kubernetes-validate $name"
    else
        fail "kubectl kustomize $name"
    fi
    rm -f "$built"
done

step "yamllint deploy/"
yamllint -d '{extends: relaxed, rules: {line-length: {max: 140}}}' deploy/ || fail "yamllint"

exit "$status"
