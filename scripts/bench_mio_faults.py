#!/usr/bin/env python3
"""Measure `mioctx run` when Mio struggles (issue #15), as processes on loopback: a mock Kafka cluster, the Mio
simulator and one or more workers of one consumer group.

Two scenarios:

    # Mio answers 503 to every context request for 90 s, then recovers: every job must end ok, none
    # upstream_unavailable, and the last result come within 15 s of the recovery.
    scripts/bench_mio_faults.py outage --jobs 3000 --users 100 --max-in-flight 256 --latency-ms 20 --outage-seconds 90

    # The simulator allows N requests per second per OAuth client (429 with Retry-After above it): no job may end
    # rate_limited, throughput should be within 10% of the cap and 429s at most 5% of the requests. Every worker
    # uses the same client, so several workers share one cap.
    scripts/bench_mio_faults.py rate-limit --cap 300 --jobs 6000 --users 300 --workers 3

Prints one JSON object of figures. Results are read with kcat; the simulator's counts come from /sim/stats.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from bench_common import (MOCK_GROUP_PROPERTIES, post, provision, spawn, start_kafka_and_simulator, stop_all,
                          wait_for_settled_group)


def get_json(url):
    import urllib.request
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=["outage", "rate-limit"])
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--users", type=int)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--max-in-flight", type=int, default=256)
    parser.add_argument("--outage-seconds", type=float, default=90)
    parser.add_argument("--cap", type=float, default=300, help="requests per second per client (rate-limit)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--binary", default=".build/release/mioctx")
    parser.add_argument("--worker-arg", action="append", default=[])
    parser.add_argument("--after-join", action="store_true",
                        help="start the workers first and produce the jobs once their group has settled (every "
                             "partition assigned, nothing moved for 2 s): the figures are then the jobs', not the "
                             "group's formation (three workers joining at once sometimes leave partitions unassigned "
                             "for ~40 s on the mock cluster)")
    parser.add_argument("--no-mock-group-properties", dest="mock_group_properties", action="store_false",
                        help="leave the workers' session.timeout.ms and heartbeat.interval.ms at librdkafka's "
                             "defaults (see MOCK_GROUP_PROPERTIES in bench_common.py)")
    parser.add_argument("--worker-start-delay", type=float, default=0,
                        help="start each worker this many seconds after the previous one (a worker that joins the "
                             "group after the mock cluster's first election: see docs/benchmarks.md)")
    parser.add_argument("--timeline", type=float, default=0,
                        help="every this many seconds, record the context answers 200 and 429 since the last sample "
                             "(from /sim/stats); printed as `timeline`")
    args = parser.parse_args()
    outage = args.scenario == "outage"
    jobs = args.jobs or (3000 if outage else 6000)
    user_count = args.users or (100 if outage else 300)

    work = tempfile.mkdtemp(prefix="mioctx-bench-faults-")
    processes = []
    try:
        bootstrap, sim_url = start_kafka_and_simulator(args.binary, args.latency_ms, processes)

        users = [f"user-{i:05d}" for i in range(user_count)]
        env, store = provision(args.binary, sim_url, users, work)
        jobs_file = os.path.join(work, "jobs.txt")
        with open(jobs_file, "w") as handle:
            for index in range(jobs):
                user = users[index % len(users)]
                job = {"id": f"job-{index}", "userId": user, "query": f"what does {user} care about? {index}"}
                handle.write(f"{user}\t{json.dumps(job)}\n")
        produce = ["kcat", "-b", bootstrap, "-P", "-t", "context-requests", "-K", "\t", "-l", jobs_file]
        if not args.after_join:
            subprocess.run(produce, check=True)

        post(f"{sim_url}/sim/stats/reset", {})
        if outage:
            post(f"{sim_url}/sim/faults", {"rate503": 1.0, "targets": ["context"]})
        else:
            post(f"{sim_url}/sim/faults", {"requestsPerSecondPerClient": args.cap})

        workers, logs = [], []
        for index in range(args.workers):
            if index and args.worker_start_delay:
                time.sleep(args.worker_start_delay)
            logs.append(os.path.join(work, f"worker-{index}.log"))
            log = open(logs[-1], "w")
            workers.append(spawn([args.binary, "run", "--kafka-bootstrap-servers", bootstrap, "--token-store", store,
                                  "--max-in-flight", str(args.max_in_flight), "--http-port", "0",
                                  "--log-level", "info" if args.after_join else "warning",
                                  *(MOCK_GROUP_PROPERTIES if args.mock_group_properties else []), *args.worker_arg],
                                 env=env, stdout=subprocess.DEVNULL, stderr=log))
        processes.extend(workers)
        if args.after_join:
            wait_for_settled_group(logs, partitions=6)
            subprocess.run(produce, check=True)
        started = time.time()
        recovered_at = None
        if outage:
            def recover():
                nonlocal recovered_at
                time.sleep(args.outage_seconds)
                post(f"{sim_url}/sim/faults", {"rate503": 0.0})
                recovered_at = time.time()
            threading.Thread(target=recover, daemon=True).start()

        timeline, sampling = [], threading.Event()
        if args.timeline > 0:
            def sample():
                last = {}
                while not sampling.wait(args.timeline):
                    try:
                        counts = get_json(f"{sim_url}/sim/stats")["requests"].get("POST /v1/context", {})
                    except OSError:
                        continue
                    timeline.append([round(time.time() - started, 2),
                                     counts.get("200", 0) - last.get("200", 0), counts.get("429", 0) - last.get("429", 0)])
                    last = counts
            threading.Thread(target=sample, daemon=True).start()

        reader = spawn(["kcat", "-b", bootstrap, "-C", "-t", "context-results", "-o", "beginning",
                        "-c", str(jobs), "-q", "-f", "%s\n"], stdout=subprocess.PIPE)
        processes.append(reader)
        output = reader.stdout.read()
        reader.wait()
        wall = time.time() - started
        sampling.set()
        stats = get_json(f"{sim_url}/sim/stats")

        statuses, completed = {}, []
        for line in output.decode().splitlines():
            result = json.loads(line)
            statuses[result["status"]] = statuses.get(result["status"], 0) + 1
            completed.append(datetime.datetime.fromisoformat(result["completedAt"].replace("Z", "+00:00")).timestamp())
        completed.sort()
        context = stats["requests"].get("POST /v1/context", {})
        answered = sum(context.values())
        figures = {
            "scenario": args.scenario, "jobs": jobs, "users": user_count, "workers": args.workers,
            "maxInFlight": args.max_in_flight, "latencyMs": args.latency_ms, "statuses": statuses,
            "wallSeconds": round(wall, 2), "contextRequestsByStatus": context,
        }
        if outage:
            figures["outageSeconds"] = args.outage_seconds
            figures["lastResultSecondsAfterRecovery"] = round(completed[-1] - recovered_at, 2) if recovered_at else None
            figures["resultsBeforeRecovery"] = sum(1 for moment in completed if recovered_at and moment < recovered_at)
        else:
            low, high = int(len(completed) * 0.05), int(len(completed) * 0.95)
            steady = (high - low) / (completed[high] - completed[low])
            overall = (len(completed) - 1) / (completed[-1] - completed[0])
            figures.update({
                "capPerSecond": args.cap,
                "jobsPerSecond": round(overall, 1), "shareOfCap": round(overall / args.cap, 3),
                "steadyJobsPerSecond": round(steady, 1), "steadyShareOfCap": round(steady / args.cap, 3),
                "share429": round(context.get("429", 0) / answered, 4) if answered else None,
            })
        if args.timeline > 0:
            figures["timeline"] = {"seconds": args.timeline, "samples [t, 200s, 429s]": timeline}
        print(json.dumps(figures, indent=2))
    finally:
        stop_all(processes)


if __name__ == "__main__":
    sys.exit(main())
