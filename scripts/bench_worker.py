#!/usr/bin/env python3
"""Measure `mioctx run` as its own process against the Mio simulator and a mock Kafka cluster on loopback.

Reports throughput (jobs/s over the window in which results were completed, from the results' own
`completedAt`), the worker's CPU time per job (user + system, everything included: start-up, group join,
shutdown) and its peak RSS. Every process runs on this machine; nothing leaves loopback.

    swift build -c release --product mioctx
    scripts/bench_worker.py --jobs 20000 --users 1000 --latency-ms 200 --max-in-flight 256
    scripts/bench_worker.py --jobs 50000 --users 1000 --latency-ms 20 --max-in-flight 512
    scripts/bench_worker.py --jobs 20000 --users 1000 --latency-ms 1000 --max-in-flight 1024
"""
import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from bench_common import die_with_parent, provision, spawn, start_kafka_and_simulator


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--max-in-flight", type=int, default=256)
    parser.add_argument("--max-in-flight-per-user", type=int, default=64)
    parser.add_argument("--binary", default=".build/release/mioctx")
    parser.add_argument("--worker-arg", action="append", default=[],
                        help="an extra argument of `mioctx run` (repeatable), e.g. --worker-arg=--log-level=debug")
    parser.add_argument("--metrics-port", type=int, default=0,
                        help="serve the worker's HTTP endpoints on this port and save /metrics at the end (its path is printed)")
    parser.add_argument("--timeline", help="write the number of results completed in each 100 ms to this file")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="mioctx-bench-")
    processes = []
    try:
        bootstrap, sim_url = start_kafka_and_simulator(args.binary, args.latency_ms, processes)
        kafka, sim = processes[-2:]

        users = [f"user-{i:05d}" for i in range(args.users)]
        env, store = provision(args.binary, sim_url, users, work)

        print(f"producing {args.jobs} jobs...", file=sys.stderr)
        jobs_file = os.path.join(work, "jobs.txt")
        with open(jobs_file, "w") as handle:
            for index in range(args.jobs):
                user = users[index % len(users)]
                job = {"id": f"job-{index}", "userId": user, "query": f"what does {user} care about? {index}"}
                handle.write(f"{user}\t{json.dumps(job)}\n")
        subprocess.run(["kcat", "-b", bootstrap, "-P", "-t", "context-requests", "-K", "\t", "-l", jobs_file],
                       check=True, preexec_fn=die_with_parent)

        print("running the worker...", file=sys.stderr)
        worker = spawn([args.binary, "run", "--kafka-bootstrap-servers", bootstrap, "--token-store", store,
                        "--max-in-flight", str(args.max_in_flight),
                        "--max-in-flight-per-user", str(args.max_in_flight_per_user),
                        "--http-port", str(args.metrics_port), "--log-level", "warning", *args.worker_arg],
                       env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "worker.log"), "w"))
        print(f"worker log: {os.path.join(work, 'worker.log')}", file=sys.stderr)
        started = time.monotonic()
        reader = spawn(["kcat", "-b", bootstrap, "-C", "-t", "context-results", "-o", "beginning",
                        "-c", str(args.jobs), "-q", "-f", "%s\n"], stdout=subprocess.PIPE)
        processes.append(reader)
        collected = []
        # Read in a thread so that a worker that stops early (bad flags, a crash) ends the run with its log.
        import threading
        drainer = threading.Thread(target=lambda: collected.append(reader.stdout.read()))
        drainer.start()
        while reader.poll() is None:
            if worker.poll() is not None:
                reader.kill()
                with open(os.path.join(work, "worker.log")) as log:
                    tail = log.read()[-2000:]
                raise SystemExit(f"the worker exited with {worker.returncode} before every result was read:\n{tail}")
            time.sleep(0.2)
        drainer.join()
        if reader.returncode != 0:
            raise SystemExit(f"kcat exited with {reader.returncode}")
        results = subprocess.CompletedProcess(reader.args, 0, stdout=collected[0] if collected else b"")
        wall = time.monotonic() - started
        threads = cpu_by_thread(worker.pid)
        switches = context_switches(worker.pid)
        if args.metrics_port:
            metrics_file = os.path.join(work, "metrics.txt")
            with urllib.request.urlopen(f"http://127.0.0.1:{args.metrics_port}/metrics", timeout=30) as response:
                with open(metrics_file, "wb") as handle:
                    handle.write(response.read())
            print(f"worker metrics: {metrics_file}", file=sys.stderr)
        others = {"simulator": process_cpu(sim.pid), "mockKafka": process_cpu(kafka.pid)}
        worker.send_signal(signal.SIGTERM)
        # wait4 gives this child's own resource usage: its CPU time and peak RSS, nothing of kcat's.
        _, raw_status, usage = os.wait4(worker.pid, 0)
        status = os.waitstatus_to_exitcode(raw_status)
        worker.returncode = status

        completed, statuses, durations = [], {}, []
        for line in results.stdout.decode().splitlines():
            result = json.loads(line)
            statuses[result["status"]] = statuses.get(result["status"], 0) + 1
            durations.append(result.get("durationMs", 0))
            completed.append(datetime.datetime.fromisoformat(result["completedAt"].replace("Z", "+00:00")).timestamp())
        spans = sorted(zip(completed, durations))
        completed.sort()
        if args.timeline:
            buckets = {}
            for moment, duration in spans:
                bucket = int((moment - completed[0]) * 10)
                count, total = buckets.get(bucket, (0, 0))
                buckets[bucket] = (count + 1, total + duration)
            with open(args.timeline, "w") as handle:
                handle.write("seconds\tcompleted\tmeanDurationMs\n")
                for bucket in range(max(buckets) + 1):
                    count, total = buckets.get(bucket, (0, 0))
                    handle.write(f"{bucket / 10:.1f}\t{count}\t{total / count if count else 0:.0f}\n")
        window = completed[-1] - completed[0]
        throughput = (len(completed) - 1) / window if window > 0 else float("inf")
        # Steady state: between the 5th and the 95th percentile of completion times, leaving out the start
        # (all slots filling at once) and the drain at the end (fewer jobs left than slots).
        low, high = int(len(completed) * 0.05), int(len(completed) * 0.95)
        steady = (high - low) / (completed[high] - completed[low]) if completed[high] > completed[low] else float("inf")
        cpu = usage.ru_utime + usage.ru_stime
        with urllib.request.urlopen(f"{sim_url}/sim/stats", timeout=30) as response:
            sim_stats = json.loads(response.read())
        bound = args.max_in_flight / (args.latency_ms / 1000) if args.latency_ms else float("inf")
        print(json.dumps({
            "jobs": args.jobs, "users": args.users, "latencyMs": args.latency_ms, "maxInFlight": args.max_in_flight,
            "statuses": statuses, "workerExit": status, "wallSecondsIncludingGroupJoin": round(wall, 2),
            "jobsPerSecond": round(throughput, 1), "littleLawBound": round(bound, 1),
            "shareOfBound": round(throughput / bound, 4) if bound != float("inf") else None,
            "steadyJobsPerSecond": round(steady, 1),
            "steadyShareOfBound": round(steady / bound, 4) if bound != float("inf") else None,
            # Where time goes outside the steady state: the first and the last 5% of completions, and what
            # they would take at the bound.
            "firstShareSeconds": round(completed[low] - completed[0], 3),
            "lastShareSeconds": round(completed[-1] - completed[high], 3),
            "shareSecondsAtBound": round(low / bound, 3) if bound != float("inf") else None,
            "meanHandlerMs": round(sum(durations) / len(durations), 1),
            "cpuSeconds": round(cpu, 3), "cpuMicrosecondsPerJob": round(cpu / args.jobs * 1e6, 1),
            "workerPeakRSSMiB": round(usage.ru_maxrss / 1024, 1),
            # CPU seconds by thread name (digits folded) once every result was read, before the shutdown.
            "cpuSecondsByThread": threads,
            # Context switches of all the worker's threads per job (voluntary: a thread went to sleep).
            "contextSwitchesPerJob": {kind: round(count / args.jobs, 2) for kind, count in switches.items()},
            # The other processes on the same cores: what the worker competes with.
            "otherProcessesCpuSeconds": others,
            "simulatorPeakConcurrency": sim_stats.get("concurrency", {}).get("peak"),
        }, indent=2))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def process_cpu(pid):
    """CPU seconds (user + system) a running process has used so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def context_switches(pid):
    """Voluntary and involuntary context switches summed over a process's threads."""
    totals = {"voluntary": 0, "involuntary": 0}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as handle:
                for line in handle:
                    if line.startswith("voluntary_ctxt_switches"):
                        totals["voluntary"] += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        totals["involuntary"] += int(line.split()[1])
        except FileNotFoundError:
            continue
    return totals


def cpu_by_thread(pid):
    """CPU seconds (user + system) of each of a process's threads, summed by name with digits folded."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as handle:
                stat = handle.read()
        except FileNotFoundError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        key = "".join("#" if ch.isdigit() else ch for ch in name)
        totals[key] = totals.get(key, 0) + (int(fields[11]) + int(fields[12])) / ticks
    return {name: round(seconds, 2) for name, seconds in sorted(totals.items(), key=lambda item: -item[1])}


if __name__ == "__main__":
    main()
