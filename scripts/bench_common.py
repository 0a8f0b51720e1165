"""What the benchmark scripts share: the simulator's OAuth client and connecting users through it."""
import ctypes
import json
import re
import signal
import subprocess
import time
import urllib.request

CLIENT_ID, CLIENT_SECRET, REDIRECT = "bench-client", "bench-secret", "http://127.0.0.1:9/callback"


def die_with_parent():
    """`preexec_fn` of every long-lived child: the kernel kills it when the script dies, even by SIGKILL or a
    `timeout`, so that no worker, simulator or mock cluster outlives an interrupted run and skews the next one."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(*args, **kwargs):
    """`subprocess.Popen` of a child that dies with this script (see `die_with_parent`)."""
    return subprocess.Popen(*args, preexec_fn=die_with_parent, **kwargs)


def stop_all(processes, timeout=30):
    """SIGTERM to every child still running, then waits for each (killing one that outlives `timeout`)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()


def first_line(process):
    """The child's first line of standard output (its address), or an exit naming the child."""
    line = process.stdout.readline().decode().strip()
    if not line:
        raise SystemExit(f"{process.args[:2]} printed no first line")
    return line


# librdkafka properties for a worker in a group on librdkafka 2.0.2's mock cluster (what the tests set too). The mock
# holds every rebalance that a member's JoinGroup starts while the group is up for `session.timeout.ms` - 1 s (44 s
# with librdkafka's default of 45 s), even after every member has rejoined; and it refuses with INVALID_REQUEST a
# follower's SyncGroup that arrives after the leader's SyncGroup completed the round, so that follower rejoins and
# starts such a rebalance, its partitions unowned meanwhile (2 of 12 three-worker runs stalled ~40 s). A real broker
# completes a rebalance once all members rejoined and answers a late SyncGroup; production keeps the defaults.
MOCK_GROUP_PROPERTIES = ["-Xsession.timeout.ms=6000", "-Xheartbeat.interval.ms=500"]


def start_kafka_and_simulator(binary, latency_ms, processes):
    """Starts the mock cluster (one broker, the three topics) and the simulator, appending both to `processes`;
    returns the bootstrap servers and the simulator's base URL."""
    kafka = spawn([binary, "mock-kafka", "--brokers", "1", "--topic", "context-requests:6",
                   "--topic", "context-results:6", "--topic", "context-dead-letters:1"],
                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    processes.append(kafka)
    bootstrap = first_line(kafka)
    sim = spawn_simulator(binary, latency_ms)
    processes.append(sim)
    return bootstrap, first_line(sim)


def spawn_simulator(binary, latency_ms):
    """Starts `mioctx sim` for the benchmarks' OAuth client, answering after `latency_ms`; its first line of output
    is its base URL."""
    return spawn([binary, "sim", "--port", "0", "--latency-ms", str(latency_ms),
                  "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET, "--redirect-url", REDIRECT],
                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def post(url, body):
    """POSTs `body` as JSON and returns the decoded JSON answer."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def connect(sim, user):
    """Consent at the simulator, exchange the code, and return a `mioctx tokens import` line for the user."""
    code = post(f"{sim}/sim/authorize", {"userId": user})["code"]
    tokens = post(f"{sim}/v1/auth/oauth2/token", {
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
    })
    return {"userId": user, "accessToken": tokens["access_token"], "refreshToken": tokens["refresh_token"],
            "expiresIn": tokens["expires_in"]}


def provision(binary, sim_url, users, work):
    """Connects `users` at the simulator, imports their tokens into a SQLite store in `work` with a new key.

    Returns the environment `mioctx` needs (key, Mio credentials, the simulator's URL) and the store location.
    """
    import concurrent.futures
    import os
    import sys

    print(f"connecting {len(users)} users through the simulator's OAuth flow...", file=sys.stderr)
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        lines = list(pool.map(lambda user: connect(sim_url, user), users))
    tokens_file = os.path.join(work, "tokens.jsonl")
    with open(tokens_file, "w") as handle:
        handle.writelines(json.dumps(line) + "\n" for line in lines)
    keys = subprocess.run([binary, "tokens", "keygen"], check=True, capture_output=True).stdout.decode().strip()
    env = dict(os.environ, MIOCTX_TOKEN_KEYS=keys, MIO_CLIENT_ID=CLIENT_ID, MIO_CLIENT_SECRET=CLIENT_SECRET,
               MIO_REDIRECT_URL=REDIRECT, MIO_API_URL=sim_url)
    store = f"sqlite:{os.path.join(work, 'tokens.sqlite')}"
    subprocess.run([binary, "tokens", "import", "--store", store, "--file", tokens_file],
                   check=True, env=env, capture_output=True)
    return env, store


def wait_for_settled_group(logs, partitions, limit=120):
    """Waits until the workers' logs (at info level) show every input partition assigned to one of them and no
    assignment or revocation for 2 s."""
    deadline = time.monotonic() + limit
    last_change, last_state = time.monotonic(), None
    while time.monotonic() < deadline:
        owned = []
        for path in logs:
            held = set()
            with open(path, errors="replace") as handle:
                for line in handle:
                    if "Kafka partitions assigned" in line:
                        held |= set(re.findall(r"context-requests\[(\d+)\]", line))
                    elif "Kafka partitions revoked" in line or "Kafka partitions lost" in line:
                        held -= set(re.findall(r"context-requests\[(\d+)\]", line))
            owned.append(frozenset(held))
        state = tuple(owned)
        if state != last_state:
            last_change, last_state = time.monotonic(), state
        covered = set().union(*owned) if owned else set()
        if len(covered) == partitions and all(owned) and time.monotonic() - last_change >= 2:
            return
        time.sleep(0.2)
    raise SystemExit(f"the workers' group did not settle within {limit} s (logs: {logs})")
