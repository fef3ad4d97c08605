"""`cloudinitd serve` as a real subprocess on loopback, and boto3 clients for it."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from tests.support.cli import Cli

REGION = "us-east-1"


class Serve:
    """One `cloudinitd serve --listen 127.0.0.1:0` process; its stderr goes to a file."""

    def __init__(self, cli: Cli, interval: float = 1.0):
        self.cli, self.interval = cli, interval
        self.log = cli.home.parent / "serve.log"
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 60) -> Serve:
        self.cli.home.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cloudinitd.cli.main", "serve", "--listen",
                 "127.0.0.1:0", "--interval", str(self.interval)],
                env=self.cli.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=err, start_new_session=True)
        line = self._read_line(timeout)
        found = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert found, f"serve did not say where it listens: {line!r}\n{self.log_text()}"
        self.url = found.group(0)
        return self

    def _read_line(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"serve printed nothing in {timeout}s\n{self.log_text()}")
        return self.proc.stdout.readline().decode()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Send `sig`; wait for the process; its exit status (negative: killed by a signal)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)

    def client(self, user: dict[str, str], **config: Any) -> Any:
        return boto3.client(
            "autoscaling", region_name=REGION, endpoint_url=self.url,
            aws_access_key_id=user["access_key"], aws_secret_access_key=user["secret_key"],
            config=Config(retries={"max_attempts": 1}, **config))


def add_user(cli: Cli, name: str) -> dict[str, str]:
    return cli("user", "add", name, "--json").json()


def wait_for(what: Callable[[], Any], timeout: float = 120, every: float = 0.5,
             why: str = "") -> Any:
    """Poll until `what()` is truthy; its value. Fails with `why` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {why}")
        time.sleep(every)


def group(client: Any, name: str) -> dict[str, Any] | None:
    found = client.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    return found["AutoScalingGroups"][0] if found["AutoScalingGroups"] else None


def in_service(client: Any, name: str) -> list[dict[str, Any]]:
    g = group(client, name)
    return [i for i in (g or {}).get("Instances", []) if i["LifecycleState"] == "InService"
            and i["HealthStatus"] == "Healthy"]


PHANTOM = "error_overflow_n_preserving"


def phantom_tags(clouds: str, n: int) -> list[dict[str, str]]:
    return [{"Key": "PHANTOM_DEFINITION", "Value": PHANTOM}, {"Key": "clouds", "Value": clouds},
            {"Key": "n_preserve", "Value": str(n)}]


def create_phantom_group(client: Any, name: str, lc: str, clouds: str, n: int) -> None:
    client.create_auto_scaling_group(AutoScalingGroupName=name, LaunchConfigurationName=lc,
                                     MinSize=n, MaxSize=n, Tags=phantom_tags(clouds, n))


def no_secret_anywhere(home: Path, log: str, *secrets: str, allowed: tuple[str, ...] = ()) -> None:
    """No secret in the serve log nor in any file of the home but the users file."""
    for secret in secrets:
        assert secret not in log
    for path in home.rglob("*"):
        if path.is_file() and path.name not in allowed:
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, path
