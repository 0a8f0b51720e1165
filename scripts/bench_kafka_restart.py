#!/usr/bin/env python3
"""Issue 14's restart scenario, read by an independent client (kcat): what a replica's crash and restart costs.

A 3-broker mock cluster (`mioctx mock-kafka`), `context-requests` with 6 partitions, the simulator with access
tokens expiring every 5 s, users connected through its OAuth flow, jobs with some bad messages (dead-lettered)
and some users without tokens (`no_tokens` results). Two `mioctx run` workers in one group
(`session.timeout.ms=6000`, `heartbeat.interval.ms=500`, in-flight 128). Worker 1 gets SIGKILL once a share of
the jobs has results (`--kill-at`, 0.3) and is started again `--restart-after` seconds later (1). kcat reads the
output and dead-letter topics from the beginning, live; the figures count the jobs without a result (lost),
the results beyond the first of their job (repeats), the dead letters beyond the first of their message, and the
bound: the killed worker's in-flight limit plus one commit interval (1 s) of its share of the throughput before
the kill.

    scripts/bench_kafka_restart.py --binary .build/release/mioctx [--jobs 20000] [--users 300] [--kills 1]

With `--kills N` the kill and restart repeat N times (the next kill when a further share of the jobs has results and
the group has settled after the previous one, alternating the workers). Prints one JSON object; the workers' logs stay in the work directory it names.
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import (CLIENT_ID, CLIENT_SECRET, REDIRECT, first_line, provision, spawn, stop_all,  # noqa: E402
                          wait_for_settled_group)


class TopicCounter:
    """Counts a topic's messages by an id, live, from a kcat consumer reading from the beginning."""

    def __init__(self, bootstrap, topic, key_of, processes):
        self.counts, self.total, self.lock = {}, 0, threading.Lock()
        self.process = spawn(["kcat", "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-u", "-q",
                              "-f", "%k\t%s\n"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        processes.append(self.process)

        def read():
            for raw in self.process.stdout:
                key = key_of(raw.decode(errors="replace").rstrip("\n"))
                with self.lock:
                    self.total += 1
                    self.counts[key] = self.counts.get(key, 0) + 1
        threading.Thread(target=read, daemon=True).start()

    def snapshot(self):
        with self.lock:
            return self.total, len(self.counts)


def result_id(line):
    _, _, value = line.partition("\t")
    try:
        return json.loads(value)["id"]
    except (ValueError, KeyError, TypeError):
        return "unreadable:" + value[:80]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=".build/release/mioctx")
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--max-in-flight", type=int, default=128)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--token-ttl", type=float, default=5)
    parser.add_argument("--bad-share", type=float, default=0.015, help="share of bad messages (dead-lettered)")
    parser.add_argument("--unknown-share", type=float, default=0.01, help="share of jobs of users without tokens")
    parser.add_argument("--kill-at", type=float, default=0.3, help="share of the jobs with results at the first kill")
    parser.add_argument("--kills", type=int, default=1)
    parser.add_argument("--restart-after", type=float, default=1.0)
    parser.add_argument("--commit-interval", type=float, default=1.0, help="the workers' processing.commitInterval, s")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--worker-arg", action="append", default=[])
    args = parser.parse_args()
    rng = random.Random(args.seed)

    work = tempfile.mkdtemp(prefix="mioctx-bench-restart-")
    processes = []
    try:
        kafka = spawn([args.binary, "mock-kafka", "--brokers", "3", "--topic", "context-requests:6:3",
                       "--topic", "context-results:6:3", "--topic", "context-dead-letters:1:3"],
                      stdout=subprocess.PIPE, stderr=open(os.path.join(work, "mock-kafka.log"), "w"))
        processes.append(kafka)
        bootstrap = first_line(kafka)
        sim = spawn([args.binary, "sim", "--port", "0", "--latency-ms", str(args.latency_ms),
                     "--token-ttl", str(args.token_ttl), "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
                     "--redirect-url", REDIRECT], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        processes.append(sim)
        sim_url = first_line(sim)

        users = [f"user-{i:05d}" for i in range(args.users)]
        env, store = provision(args.binary, sim_url, users, work)
        jobs_file = os.path.join(work, "jobs.txt")
        expected, bad = set(), 0
        with open(jobs_file, "w") as handle:
            for index in range(args.jobs):
                draw = rng.random()
                if draw < args.bad_share:
                    bad += 1
                    handle.write(f"bad-{index}\t{{\"id\": \"bad-{index}\", \"query\": 42\n")
                    continue
                user = f"unknown-{index % 50}" if draw < args.bad_share + args.unknown_share else users[index % len(users)]
                job = {"id": f"job-{index}", "userId": user, "query": f"what does {user} care about? {index}"}
                expected.add(job["id"])
                handle.write(f"{user}\t{json.dumps(job)}\n")
        subprocess.run(["kcat", "-b", bootstrap, "-P", "-t", "context-requests", "-K", "\t", "-l", jobs_file],
                       check=True)

        results = TopicCounter(bootstrap, "context-results", result_id, processes)
        dead = TopicCounter(bootstrap, "context-dead-letters", lambda line: line.partition("\t")[0], processes)

        starts, logs = [0], {}

        def start_worker(index):
            starts[0] += 1
            logs[index] = os.path.join(work, f"worker-{index}-{starts[0]}.log")
            log = open(logs[index], "w")
            process = spawn([args.binary, "run", "--kafka-bootstrap-servers", bootstrap, "--token-store", store,
                             "--max-in-flight", str(args.max_in_flight), "--http-port", "0", "--log-level", "info",
                             "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500", *args.worker_arg],
                            env=dict(env, MIOCTX_PROCESSING_COMMIT_INTERVAL=f"{int(args.commit_interval * 1000)}ms"),
                            stdout=subprocess.DEVNULL, stderr=log)
            processes.append(process)
            return process

        workers = [start_worker(0), start_worker(1)]
        started = time.time()
        kills = []
        victim = 1
        for kill in range(args.kills):
            share = args.kill_at + kill * (0.9 - args.kill_at) / max(1, args.kills)
            while results.snapshot()[1] < share * len(expected):
                time.sleep(0.01)
            # The group's rate over the 2 s before the kill, for the bound.
            unique_then, rate_window_start = results.snapshot()[1], time.time()
            time.sleep(2)
            total, unique = results.snapshot()
            group_rate = (unique - unique_then) / (time.time() - rate_window_start)
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait()
            killed_at = unique
            time.sleep(args.restart_after)
            workers[victim] = start_worker(victim)
            # Before the next kill, the group settles (every partition owned, nothing moved for 2 s) and runs 3 s
            # more, so that this kill's repeats (redone by the partitions' new owners) are counted before it.
            wait_for_settled_group([logs[0], logs[1]], partitions=6, limit=180)
            time.sleep(3)
            kills.append({"atResults": killed_at, "groupResultsPerSecond": round(group_rate, 1),
                          "repeatsBefore": total - unique, "victim": victim, "seconds": round(time.time() - started, 1)})
            victim = 1 - victim

        deadline = time.time() + 600
        while results.snapshot()[1] < len(expected) or dead.snapshot()[1] < bad:
            if time.time() > deadline:
                break
            time.sleep(0.2)
        wall = time.time() - started
        time.sleep(3)  # late repeats, if any, arrive too
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(timeout=60)
        time.sleep(2)
        total, unique = results.snapshot()
        dead_total, dead_unique = dead.snapshot()
        with results.lock:
            missing = len(expected - set(results.counts))
            repeated = sum(count - 1 for count in results.counts.values())
        for index, kill in enumerate(kills):
            following = kills[index + 1]["repeatsBefore"] if index + 1 < len(kills) else repeated
            kill["repeats"] = following - kill["repeatsBefore"]
            kill["bound"] = round(args.max_in_flight + args.commit_interval * kill["groupResultsPerSecond"] / 2)
        print(json.dumps({
            "jobs": args.jobs, "validJobs": len(expected), "badMessages": bad, "users": args.users,
            "maxInFlight": args.max_in_flight, "results": total, "jobsWithAResult": unique, "lost": missing,
            "repeats": repeated, "deadLetters": dead_total, "deadLettersRepeated": dead_total - dead_unique,
            "kills": kills, "wallSeconds": round(wall, 1), "work": work,
        }, indent=2))
    finally:
        stop_all(processes)


if __name__ == "__main__":
    sys.exit(main())
