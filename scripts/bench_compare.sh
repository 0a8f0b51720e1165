#!/usr/bin/env bash
# Alternates two release builds of mioctx under scripts/bench_worker.py, so that both are measured in the same
# window of a shared machine: one JSON line of figures per run (CPU per job, throughput, share of Little's bound,
# peak RSS). Compare them as ratios, round by round.
#
#   scripts/bench_compare.sh OLD_BINARY NEW_BINARY [ROUNDS]
#   e.g. (a build of an older commit in a clone at /tmp/old):
#   scripts/bench_compare.sh /tmp/old/.build/release/mioctx .build/release/mioctx 4
set -euo pipefail
cd "$(dirname "$0")/.."
old="${1:?usage: bench_compare.sh OLD_BINARY NEW_BINARY [ROUNDS]}"
new="${2:?usage: bench_compare.sh OLD_BINARY NEW_BINARY [ROUNDS]}"
rounds="${3:-2}"
for round in $(seq 1 "$rounds"); do
    for build in old new; do
        binary=$old; [ "$build" = new ] && binary=$new
        for load in "20 512 50000" "200 256 20000"; do
            read -r latency inflight jobs <<< "$load"
            python3 scripts/bench_worker.py --binary "$binary" --latency-ms "$latency" --max-in-flight "$inflight" \
                --jobs "$jobs" --users 1000 2>/dev/null \
            | python3 -c "
import json, sys
d = json.load(sys.stdin)
print(json.dumps({'round': $round, 'build': '$build', 'latencyMs': d['latencyMs'], 'maxInFlight': d['maxInFlight'],
                  'jobs': d['jobs'], 'statuses': d['statuses'], 'jobsPerSecond': d['jobsPerSecond'],
                  'shareOfBound': d['shareOfBound'], 'cpuMicrosecondsPerJob': d['cpuMicrosecondsPerJob'],
                  'workerPeakRSSMiB': d['workerPeakRSSMiB']}))"
        done
    done
done
