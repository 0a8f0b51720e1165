#!/usr/bin/env bash
# Writes deploy/kubernetes/base/prometheusrule.yaml from deploy/prometheus/alerts.yaml (the one source of the
# alerts): the same rule groups, wrapped in a PrometheusRule for the Prometheus Operator.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 - <<'PY'
import yaml
class Dumper(yaml.SafeDumper):
    pass
def text(dumper, data):
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)
Dumper.add_representer(str, text)
groups = yaml.safe_load(open("deploy/prometheus/alerts.yaml"))["groups"]
rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "mioctx"},
        "spec": {"groups": groups}}
with open("deploy/kubernetes/base/prometheusrule.yaml", "w") as out:
    out.write("# The alerts of deploy/prometheus/alerts.yaml for the Prometheus Operator (the same groups: DeploymentFilesTests\n"
              "# fails when the two differ). Every metric named here is checked against a live worker's /metrics.\n"
              "# Regenerate after editing alerts.yaml: scripts/sync-alerts.sh\n")
    out.write(yaml.dump(rule, Dumper=Dumper, sort_keys=False, width=120))
PY
