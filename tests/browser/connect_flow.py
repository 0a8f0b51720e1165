#!/usr/bin/env python3
"""The OAuth connect flow in a real browser: Debian's Chromium, headless, driven by Selenium, against `mioctx run`
(its OAuth listener), `mioctx sim` (Mio's consent page) and `mioctx mock-kafka`.

Cases: the happy path stores tokens; an unsigned link, a replayed state, a callback opened in another browser
profile (no cookie) and an expired link are refused; no page reflects unescaped input.

Usage: tests/browser/connect_flow.py PATH/TO/mioctx   (exit status 0 when every case passes)
"""
import base64
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

CLIENT_ID, CLIENT_SECRET = "browser-test-client", "browser-test-secret"
PROBE = "<script>window.__pwned=1</script>"


def die_with_parent():
    """Every child is killed by the kernel when this script dies, so that none outlives an interrupted run."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url, what, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=5)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{what} did not answer at {url} within {seconds} s")


class Harness:
    def __init__(self, binary, work):
        self.binary, self.work, self.children = binary, work, []
        oauth_port, ops_port, sim_port = free_port(), free_port(), free_port()
        self.oauth = f"http://127.0.0.1:{oauth_port}"
        self.sim = f"http://127.0.0.1:{sim_port}"
        redirect = f"{self.oauth}/oauth/callback"
        kafka = self.spawn([binary, "mock-kafka", "--topic", "context-requests:1", "--topic", "context-results:1",
                            "--topic", "context-dead-letters:1"], stdout=subprocess.PIPE)
        bootstrap = kafka.stdout.readline().decode().strip()
        self.spawn([binary, "sim", "--port", str(sim_port), "--client-id", CLIENT_ID, "--client-secret",
                    CLIENT_SECRET, "--redirect-url", redirect], stdout=subprocess.DEVNULL)
        keys = subprocess.run([binary, "tokens", "keygen"], check=True, capture_output=True).stdout.decode().strip()
        self.env = dict(
            os.environ, MIO_CLIENT_ID=CLIENT_ID, MIO_CLIENT_SECRET=CLIENT_SECRET, MIO_REDIRECT_URL=redirect,
            MIO_API_URL=self.sim, MIO_DASHBOARD_URL=self.sim, MIOCTX_TOKEN_KEYS=keys,
            MIOCTX_OAUTH_STATE_KEY=base64.b64encode(os.urandom(32)).decode(),
            MIOCTX_TOKENS_STORE=f"sqlite:{os.path.join(work, 'tokens.sqlite')}",
            MIOCTX_KAFKA_BOOTSTRAP_SERVERS=bootstrap, MIOCTX_OAUTH_ENABLED="true",
            MIOCTX_OAUTH_HOST="127.0.0.1", MIOCTX_OAUTH_PORT=str(oauth_port),
            MIOCTX_HTTP_HOST="127.0.0.1", MIOCTX_HTTP_PORT=str(ops_port),
        )
        self.log = open(os.path.join(work, "run.log"), "wb")
        self.spawn([binary, "run"], env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self.sim + "/sim/stats", "mioctx sim")
        wait_for(self.oauth + "/oauth/connect", "mioctx run's OAuth listener")
        # The operations listener serves no OAuth route.
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/oauth/connect", timeout=5)
            raise SystemExit("the operations listener served /oauth/connect")
        except urllib.error.HTTPError as error:
            assert error.code == 404, error.code

    def spawn(self, args, **kwargs):
        child = subprocess.Popen(args, preexec_fn=die_with_parent, **kwargs)
        self.children.append(child)
        return child

    def link(self, user, lifetime=900, replace=False):
        args = [self.binary, "tokens", "connect-link", "--user", user, "--lifetime", str(lifetime)]
        if replace:
            args.append("--replace")
        return subprocess.run(args, check=True, capture_output=True, env=self.env).stdout.decode().strip()

    def token_status(self, user):
        result = subprocess.run([self.binary, "tokens", "get", user], capture_output=True, env=self.env)
        if result.returncode != 0:
            return None
        for line in result.stdout.decode().splitlines():
            if line.startswith("status:"):
                return line.split(":", 1)[1].strip()
        return None

    def stop(self):
        for child in reversed(self.children):
            child.send_signal(signal.SIGTERM)
        for child in reversed(self.children):
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        self.log.close()


def browser(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--user-data-dir={profile}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(
        options=options, service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    )
    driver.set_page_load_timeout(60)
    return driver


def page_text(driver):
    return driver.find_element(By.TAG_NAME, "body").text


def allow(driver, account):
    field = driver.find_element(By.ID, "account")
    field.clear()
    field.send_keys(account)
    driver.find_element(By.ID, "allow").click()


def check_no_reflection(driver, what):
    source = driver.page_source
    assert "<script" not in source.lower(), f"{what}: the page holds a script element:\n{source}"
    assert driver.execute_script("return window.__pwned === undefined"), f"{what}: injected script ran"


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    binary = os.path.abspath(sys.argv[1])
    failures = []
    with tempfile.TemporaryDirectory(prefix="mioctx-browser-") as work:
        harness = Harness(binary, work)
        first = browser(os.path.join(work, "profile-a"))
        second = browser(os.path.join(work, "profile-b"))
        try:
            def case(name, body):
                try:
                    body()
                    print(f"ok   {name}")
                except Exception as error:  # report every case, then fail
                    failures.append(name)
                    print(f"FAIL {name}: {error!r}")

            def happy_path_and_replay():
                first.get(harness.link("alice"))
                assert first.current_url.startswith(harness.sim + "/connect?"), first.current_url
                check_no_reflection(first, "consent page")
                allow(first, "mio-alice")
                assert "connected" in page_text(first), page_text(first)
                assert harness.token_status("alice") == "active", harness.token_status("alice")
                callback = first.current_url
                assert callback.startswith(harness.oauth + "/oauth/callback?"), callback
                # The same callback (its state) again in the same browser: refused.
                first.get(callback)
                assert "already used" in page_text(first), page_text(first)

            def unsigned_link():
                first.get(f"{harness.oauth}/oauth/connect?user=mallory")
                assert "not signed" in page_text(first), page_text(first)
                assert first.current_url.startswith(harness.oauth), "an unsigned link reached the consent page"
                assert harness.token_status("mallory") is None

            def callback_in_another_profile():
                # The victim's browser (second profile) is sent the consent page of a flow the attacker (first
                # profile) started: the callback arrives without the attacker's cookie.
                first.get(harness.link("attacker"))
                consent = first.current_url
                second.get(consent)
                allow(second, "mio-victim")
                assert "another browser" in page_text(second), page_text(second)
                assert harness.token_status("attacker") is None

            def expired_link():
                link = harness.link("late", lifetime=1)
                time.sleep(2.5)
                first.get(link)
                assert "expired" in page_text(first), page_text(first)
                assert harness.token_status("late") is None

            def no_reflection():
                probe = urllib.parse.quote(PROBE)
                for url in (
                    f"{harness.oauth}/oauth/connect?user={probe}&expires={probe}&signature={probe}",
                    f"{harness.oauth}/oauth/callback?state={probe}&code={probe}&error={probe}",
                    f"{harness.sim}/connect?client_id={CLIENT_ID}&redirect_uri="
                    f"{urllib.parse.quote(harness.env['MIO_REDIRECT_URL'])}&scope={probe}&state={probe}",
                ):
                    first.get(url)
                    check_no_reflection(first, url)
                # A signed link for a user id that is markup: the flow's pages do not show it as markup either.
                first.get(harness.link(PROBE))
                check_no_reflection(first, "consent page of a markup user id")
                allow(first, "mio-probe")
                check_no_reflection(first, "callback page of a markup user id")

            import urllib.parse  # noqa: E402 (used by no_reflection)

            case("happy path stores tokens; replayed state refused", happy_path_and_replay)
            case("unsigned link refused", unsigned_link)
            case("callback in another browser profile (no cookie) refused", callback_in_another_profile)
            case("expired link refused", expired_link)
            case("no page reflects unescaped input", no_reflection)
        finally:
            first.quit()
            second.quit()
            harness.stop()
        if failures:
            with open(os.path.join(work, "run.log"), "rb") as log:
                sys.stderr.write(log.read().decode(errors="replace")[-4000:])
    if failures:
        raise SystemExit(f"browser test: {len(failures)} case(s) failed: {', '.join(failures)}")
    print("browser test: every case passed")


if __name__ == "__main__":
    main()
