"""Start the real processes (`python -m <package>`) against the real servers, on free ports."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from tests import support as http
from tests.support import MailSink, free_port

PROCESSES = ("auth_svc", "project_svc", "analytics_svc", "logging_svc", "gateway")
PORT_VARIABLES = {
    "gateway": "GATEWAY_PORT", "auth_svc": "AUTH_HTTP_PORT", "project_svc": "PROJECT_HTTP_PORT",
    "analytics_svc": "ANALYTICS_HTTP_PORT", "logging_svc": "LOGGING_HTTP_PORT",
    "gateway_status": "GATEWAY_STATUS_PORT",
}


@dataclass
class Stack:
    env: dict[str, str]
    log_dir: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.env['GATEWAY_PORT']}"

    def port(self, name: str) -> int:
        return int(self.env[PORT_VARIABLES[name]])

    def start(self, name: str) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", name], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    def stop(self, name: str, timeout: float = 20) -> int:
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def wait_healthy(self, timeout: float = 30) -> dict:
        until = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < until:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(f"{name} exited with {process.returncode}:\n"
                                         + self.logs(name))
            try:
                status, body = http.get_json(f"{self.gateway_url}/health")
                if status == 200:
                    return body
                last = body
            except OSError as exc:
                last = exc
            time.sleep(0.2)
        raise AssertionError(f"stack not healthy after {timeout} s: {last}")

    def cli(self, *args: str) -> str:
        """Run an operator command (`python -m auth_svc ...`) against this stack's database."""
        done = subprocess.run([sys.executable, "-m", "auth_svc", *args], env=self.env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def logs(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")[-4000:]


def start_stack(log_dir: Path, **overrides: str) -> Stack:
    env = {**os.environ, "SHUTDOWN_GRACE_S": "5", "HEALTH_TIMEOUT_MS": "3000", **overrides}
    for variable in PORT_VARIABLES.values():
        if variable not in overrides:  # a module may fix one (its APP_URL names the gateway)
            env[variable] = str(free_port())
    running = Stack(env, log_dir)
    for name in PROCESSES:
        running.start(name)
    return running


def stop_stack(running: Stack) -> None:
    for name in reversed(PROCESSES):
        running.stop(name)


@contextmanager
def healthy_stack(log_dir: Path, **overrides: str) -> Iterator[Stack]:
    """A started, healthy stack, stopped however the block ends (no orphan processes)."""
    running = start_stack(log_dir, **overrides)
    try:
        running.wait_healthy()
        yield running
    finally:
        stop_stack(running)


@pytest.fixture(scope="session")
def mail_sink() -> Iterator[MailSink]:
    sink = MailSink()
    sink.url = sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def stack(backends: None, tmp_path: Path) -> Iterator[Stack]:
    """A stack of one test (for tests that stop or restart processes)."""
    running = start_stack(tmp_path)
    yield running
    stop_stack(running)


@pytest.fixture(scope="module")
def shared_stack(backends: None, mail_sink: MailSink,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One healthy stack for a whole test module, mail going to `mail_sink`."""
    with healthy_stack(tmp_path_factory.mktemp("stack"), SMTP_URL=mail_sink.url) as running:
        yield running


@pytest.fixture(scope="module")
def upstream() -> Iterator:
    """A real HTTP server on loopback for upstream route configs."""
    from tests.e2e.helpers import Upstream

    server = Upstream()
    server.start()
    yield server
    server.stop()




# --- a stack whose tenants route to loopback upstreams, and its users -------------------------


@pytest.fixture(scope="module")
def gw_settings() -> dict[str, str]:
    """Settings of a module's `gw` stack beyond the defaults (a module overrides this)."""
    return {}


@pytest.fixture(scope="module")
def gw(backends: None, tmp_path_factory: pytest.TempPathFactory,
       gw_settings: dict[str, str]) -> Iterator[Stack]:
    """One healthy stack for a module whose route configs point at a loopback upstream
    (`UPSTREAM_ALLOW_PRIVATE`), with the module's `gw_settings`."""
    with healthy_stack(tmp_path_factory.mktemp("gw"), UPSTREAM_ALLOW_PRIVATE="127.0.0.0/8",
                       **gw_settings) as running:
        yield running


@pytest.fixture(scope="module")
def alice(gw: Stack):
    from tests.e2e.helpers import register

    return register(gw, "alice")


@pytest.fixture(scope="module")
def bob(gw: Stack):
    """A second developer, who must never see alice's resources and traffic (nor she his)."""
    from tests.e2e.helpers import register

    return register(gw, "bob")


@pytest.fixture(scope="module")
def admin(gw: Stack):
    from tests.e2e.helpers import register, with_role

    return with_role(gw, register(gw, "admin"), "ADMIN")


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """The Debian `chromium` package driven by Playwright (nothing is downloaded)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: `make test` installs the Debian package")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    yield opened
    context.close()
