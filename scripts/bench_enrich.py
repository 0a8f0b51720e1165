#!/usr/bin/env python3
"""Measure `mioctx enrich` as its own process against `mioctx sim` on loopback.

Connects users through the simulator's OAuth flow, imports their tokens with `mioctx tokens import` into a
temporary SQLite store, writes a JSON Lines file of jobs and times one `mioctx enrich` run over it (the whole
process: start-up, store, every job, fsync). Prints jobs/s over the process's wall time, its CPU time per job and
peak RSS, and the statuses of the results. Everything runs on this machine; nothing leaves loopback.

    swift build -c release --product mioctx
    scripts/bench_enrich.py --jobs 10000 --users 1000
    scripts/bench_enrich.py --jobs 10000 --users 1000 --latency-ms 20
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from bench_common import provision, spawn, spawn_simulator


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--max-in-flight", type=int, default=None, help="default: the configuration's (256)")
    parser.add_argument("--binary", default=".build/release/mioctx")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="mioctx-enrich-bench-")
    sim = None
    try:
        sim = spawn_simulator(args.binary, args.latency_ms)
        sim_url = sim.stdout.readline().decode().strip()

        users = [f"user-{i:05d}" for i in range(args.users)]
        env, store = provision(args.binary, sim_url, users, work)

        jobs_file = os.path.join(work, "jobs.jsonl")
        with open(jobs_file, "w") as handle:
            for index in range(args.jobs):
                user = users[index % len(users)]
                handle.write(json.dumps({"id": f"job-{index}", "userId": user,
                                         "query": f"what does {user} care about? {index}"}) + "\n")

        output = os.path.join(work, "results.jsonl")
        command = [args.binary, "enrich", "--input", jobs_file, "--output", output, "--token-store", store,
                   "--progress", "none"]
        if args.max_in_flight:
            command += ["--max-in-flight", str(args.max_in_flight)]
        print("running: " + " ".join(command), file=sys.stderr)
        started = time.monotonic()
        enrich = spawn(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # wait4 gives this child's own resource usage: its CPU time and peak RSS.
        _, raw_status, usage = os.wait4(enrich.pid, 0)
        wall = time.monotonic() - started
        summary = enrich.stderr.read().decode().strip().splitlines()

        statuses = {}
        with open(output) as handle:
            for line in handle:
                status = json.loads(line)["status"]
                statuses[status] = statuses.get(status, 0) + 1
        cpu = usage.ru_utime + usage.ru_stime
        print(json.dumps({
            "jobs": args.jobs, "users": args.users, "latencyMs": args.latency_ms,
            "exit": os.waitstatus_to_exitcode(raw_status), "statuses": statuses,
            "wallSeconds": round(wall, 2), "jobsPerSecond": round(args.jobs / wall, 1),
            "cpuSeconds": round(cpu, 3), "cpuMicrosecondsPerJob": round(cpu / args.jobs * 1e6, 1),
            "peakRSSMiB": round(usage.ru_maxrss / 1024, 1), "summary": summary[-1] if summary else None,
        }, indent=2))
    finally:
        if sim:
            sim.send_signal(signal.SIGTERM)
            sim.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
