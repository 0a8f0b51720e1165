#!/usr/bin/env python3
"""The refresh storm of issue 16, measured end to end: users whose tokens have all expired when the jobs arrive.

Every user is connected through the simulator's OAuth flow and imported with an access token that has already
expired (`--expired`, the default) or with a fresh one (`--fresh`, the baseline: the same jobs with no refresh).
The jobs are produced to a mock Kafka cluster; `--workers` processes of `mioctx run` share them, on one SQLite
file (`--store sqlite`, one worker) or on one PostgreSQL database (`--store postgres://...`, e.g. three workers).
Reports the wall time until every result was read, the results by status, and the simulator's counts: refresh
calls, reuse detections. A benchmark, not a test: nothing fails on time.

    swift build -c release --product mioctx
    scripts/bench_token_storm.py --store sqlite --workers 1            # (a) storm, SQLite, one worker
    scripts/bench_token_storm.py --store sqlite --workers 1 --fresh    #     baseline
    scripts/bench_token_storm.py --store "$(scripts/test-postgres.sh)" --workers 3          # (b)
    scripts/bench_token_storm.py --store "$(scripts/test-postgres.sh)" --workers 3 --fresh  #     baseline
    scripts/bench_token_storm.py --store sqlite --rounds 3             # storm and baseline alternately, medians

The PostgreSQL URL reaches the children through MIOCTX_TOKENS_STORE (a URL with a password is refused as a flag).
"""
import argparse
import concurrent.futures
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from bench_common import connect, die_with_parent, spawn, start_kafka_and_simulator, wait_for_settled_group


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--max-in-flight", type=int, default=256)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--store", default="sqlite", help="sqlite (a file in a temporary directory) or a postgres:// URL")
    parser.add_argument("--fresh", action="store_true", help="import unexpired tokens (the baseline)")
    parser.add_argument("--binary", default=".build/release/mioctx")
    parser.add_argument("--log-level", default="warning", help="the workers' log level (their logs stay in the "
                        "temporary directory the script prints)")
    parser.add_argument("--after-join", action="store_true",
                        help="start the workers first and produce the jobs once their group has settled: the times "
                        "are the jobs' alone (without it the workers join while the jobs wait)")
    parser.add_argument("--rounds", type=int, default=0,
                        help="run the storm and the baseline alternately this many times each (ignores --fresh) and "
                        "end with the medians and their ratio: on a shared machine only the ratio means something")
    args = parser.parse_args()
    if args.rounds <= 0:
        print(json.dumps(run_once(args, args.fresh), indent=2))
        return
    runs = {"expired": [], "fresh": []}
    for _ in range(args.rounds):
        for fresh in (False, True):
            figures = run_once(args, fresh)
            runs[figures["tokens"]].append(figures)
            print(json.dumps(figures), flush=True)
    summary = {"rounds": args.rounds, "workers": args.workers, "store": runs["fresh"][0]["store"]}
    for key in ("wallSecondsIncludingGroupJoin", "firstToLastResultSeconds"):
        expired = statistics.median(run[key] for run in runs["expired"])
        fresh = statistics.median(run[key] for run in runs["fresh"])
        summary[key] = {"expiredMedian": round(expired, 2), "freshMedian": round(fresh, 2),
                        "ratio": round(expired / fresh, 2)}
    summary["refreshCallsAtMio"] = [run["refreshCallsAtMio"] for run in runs["expired"]]
    summary["reuseDetections"] = sum(run["reuseDetections"] or 0 for run in runs["expired"] + runs["fresh"])
    summary["notOk"] = sum(sum(run["failureCodes"].values()) for run in runs["expired"] + runs["fresh"])
    print(json.dumps({"summary": summary}))


def run_once(args, fresh):
    """One run: connect and import the users (expired tokens unless `fresh`), produce the jobs, start the workers,
    read every result; returns the figures."""
    work = tempfile.mkdtemp(prefix="mioctx-storm-")
    print(f"logs in {work}", file=sys.stderr)
    processes = []
    try:
        bootstrap, sim_url = start_kafka_and_simulator(args.binary, args.latency_ms, processes)

        users = [f"user-{i:05d}" for i in range(args.users)]
        print(f"connecting {len(users)} users...", file=sys.stderr)
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            lines = list(pool.map(lambda user: connect(sim_url, user), users))
        if not fresh:
            # Issued an hour ago, expired a second ago: every user needs a refresh before the first job.
            for line in lines:
                line.pop("expiresIn")
                line["expiresAt"] = int(time.time()) - 1
        tokens_file = os.path.join(work, "tokens.jsonl")
        with open(tokens_file, "w") as handle:
            handle.writelines(json.dumps(line) + "\n" for line in lines)
        keys = subprocess.run([args.binary, "tokens", "keygen"], check=True, capture_output=True).stdout.decode().strip()
        from bench_common import CLIENT_ID, CLIENT_SECRET, REDIRECT
        env = dict(os.environ, MIOCTX_TOKEN_KEYS=keys, MIO_CLIENT_ID=CLIENT_ID, MIO_CLIENT_SECRET=CLIENT_SECRET,
                   MIO_REDIRECT_URL=REDIRECT, MIO_API_URL=sim_url)
        if args.store == "sqlite":
            store_flag = ["--store", f"sqlite:{os.path.join(work, 'tokens.sqlite')}"]
        else:
            # A URL with a password is refused as a flag (it would show in /proc/*/cmdline): the environment.
            env["MIOCTX_TOKENS_STORE"] = args.store
            store_flag = []
        subprocess.run([args.binary, "tokens", "import", *store_flag, "--file", tokens_file],
                       check=True, env=env, capture_output=True)
        post(f"{sim_url}/sim/stats/reset")

        jobs_file = os.path.join(work, "jobs.txt")
        with open(jobs_file, "w") as handle:
            for index in range(args.jobs):
                user = users[index % len(users)]
                job = {"id": f"job-{index}", "userId": user, "query": f"storm {index}"}
                handle.write(f"{user}\t{json.dumps(job)}\n")
        produce = ["kcat", "-b", bootstrap, "-P", "-t", "context-requests", "-K", "\t", "-l", jobs_file]
        if not args.after_join:
            subprocess.run(produce, check=True, preexec_fn=die_with_parent)

        started = time.monotonic()
        workers, logs = [], []
        for index in range(args.workers):
            logs.append(os.path.join(work, f"worker-{index}.log"))
            log = open(logs[-1], "w")
            run_store_flag = ["--token-store", store_flag[1]] if store_flag else []
            level = "info" if args.after_join and args.log_level == "warning" else args.log_level
            workers.append(spawn([args.binary, "run", "--kafka-bootstrap-servers", bootstrap, *run_store_flag,
                                  "--max-in-flight", str(args.max_in_flight), "--http-port", "0",
                                  "--log-level", level],
                                 env=env, stdout=subprocess.DEVNULL, stderr=log))
        processes.extend(workers)
        if args.after_join:
            # The group has settled (every partition assigned, nothing moved for 2 s): then the jobs arrive, and
            # the clock measures the jobs, not the group's formation.
            wait_for_settled_group(logs, partitions=6)
            subprocess.run(produce, check=True, preexec_fn=die_with_parent)
            started = time.monotonic()
        reader = spawn(["kcat", "-b", bootstrap, "-C", "-t", "context-results", "-o", "beginning",
                        "-c", str(args.jobs), "-q", "-f", "%s\n"], stdout=subprocess.PIPE)
        processes.append(reader)
        # Read line by line: the first result's time separates the workers' start and group join from the work.
        lines, first_result = [], None
        for line in reader.stdout:
            if first_result is None:
                first_result = time.monotonic() - started
            lines.append(line)
        wall = time.monotonic() - started

        statuses, codes = {}, {}
        for line in lines:
            result = json.loads(line)
            statuses[result["status"]] = statuses.get(result["status"], 0) + 1
            if result["status"] != "ok":
                code = result.get("error", {}).get("code", "?") if isinstance(result.get("error"), dict) else "?"
                codes[code] = codes.get(code, 0) + 1
        with urllib.request.urlopen(f"{sim_url}/sim/stats", timeout=30) as response:
            stats = json.loads(response.read())
        refreshes = sum(stats.get("refreshesByUser", {}).values())
        return {
            "jobs": args.jobs, "users": args.users, "latencyMs": args.latency_ms, "maxInFlight": args.max_in_flight,
            "workers": args.workers, "store": "sqlite" if args.store == "sqlite" else "postgres",
            "tokens": "fresh" if fresh else "expired",
            "jobsProducedAfterGroupSettled": args.after_join,
            "wallSecondsIncludingGroupJoin": round(wall, 2),
            "firstResultSeconds": round(first_result or wall, 2),
            "firstToLastResultSeconds": round(wall - (first_result or wall), 2),
            "statuses": statuses, "failureCodes": codes,
            "refreshCallsAtMio": refreshes, "usersRefreshedMoreThanOnce": sum(
                1 for count in stats.get("refreshesByUser", {}).values() if count > 1),
            "reuseDetections": stats.get("reuseDetections"),
            "littleLawSeconds": round(args.jobs / (args.max_in_flight * args.workers / (args.latency_ms / 1000)), 2),
        }
    finally:
        # Last started, first stopped, each group at once: the workers drain while Kafka and the simulator still
        # run (stopping the cluster first held every worker's shutdown for its full timeout).
        for group in reversed(stop_groups(processes)):
            for process in group:
                process.send_signal(signal.SIGTERM)
            for process in group:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


def stop_groups(processes):
    """The children in the order they were started, the `mioctx run` workers as one group."""
    groups = []
    for process in processes:
        if groups and process.args[1:2] == ["run"] and groups[-1][0].args[1:2] == ["run"]:
            groups[-1].append(process)
        else:
            groups.append([process])
    return groups


def post(url):
    request = urllib.request.Request(url, data=b"{}", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


if __name__ == "__main__":
    main()
