#!/usr/bin/env bash
# Prints, after a failed test run, what a short tail of CI's output must show: the failures, the tests that
# started and never finished (a crash ends the run in the middle of them), and last the crashed thread's
# top frames. Usage: scripts/test-report.sh OUTPUT-FILE
set -euo pipefail
output="$1"
[ -f "$output" ] || { echo "test-report: no output file $output" >&2; exit 1; }

echo "==== test report ($output) ===="
echo "-- failures:"
grep -E '^✘ ' "$output" | head -10 | cut -c1-300 || true
awk '
    /^◇ Test run started/ || /^◇ Test case passing / { next }
    /^◇ Test .* started\.$/ { name = $0; sub(/^◇ Test /, "", name); sub(/ started\.$/, "", name); open[name] = 1; next }
    /^(✔|✘|➜) Test .* (passed|failed|skipped)/ {
        name = $0; sub(/^(✔|✘|➜) Test /, "", name)
        sub(/ (with [0-9]+ test cases? )?(passed|failed|skipped).*$/, "", name); delete open[name]
    }
    END {
        count = 0; names = ""
        for (name in open) { count++; names = names (names == "" ? "" : ", ") name }
        printf "-- %d tests started and not finished: %s\n", count, substr(names, 1, 900)
    }
' "$output"
if grep -q 'Program crashed' "$output"; then
    echo "-- crash (the crashed thread's top frames):"
    awk '/Program crashed/ { on = 1 } on && /^Registers:/ { exit } on && NF { print }' "$output" | head -14 | cut -c1-300
fi
echo "==== end of test report ===="
