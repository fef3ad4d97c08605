"""Start, drive and stop one test cloud process (see middleware.py for what it simulates)."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

SERVER = Path(__file__).with_name("server.py")
REGION = "us-east-1"
# Dummy credentials for the test cloud (moto accepts any). Tests reach the
# provider through env var NAMES, as a user's plan would.
ACCESS_KEY = "AKIATESTCLOUD0000000"
SECRET_KEY = "testcloud/secret+never-logged-9f3c1e"

# Loopback only: never let an HTTP(S)_PROXY variable route control calls elsewhere.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class TestCloudError(RuntimeError):
    pass


class TestCloud:
    """A moto-based EC2 cloud in its own process, listening on 127.0.0.1.

    Instances launched on it get addresses moto invents (54.x, 10.x) that
    belong to nobody: tests must not SSH to or probe them. Give instances a
    real host with `set_pool([...])` / `back({id: address})` when a test must
    reach them (loopback sshd addresses or the project's own bridge only).
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, name: str = "cloud", log_dir: Path | None = None):
        self.name = name
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.log_path: Path | None = None

    # -- lifecycle --------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> TestCloud:
        env = dict(os.environ, MOTO_EC2_LOAD_DEFAULT_AMIS="false", PYTHONUNBUFFERED="1")
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.pop(var, None)
        stderr: Any = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.log_path = self.log_dir / f"testcloud-{self.name}.log"
            stderr = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER)], stdout=subprocess.PIPE, stderr=stderr, env=env
        )
        if stderr is not subprocess.DEVNULL:
            stderr.close()
        line = self._read_line(timeout)
        if not line.startswith("TESTCLOUD PORT "):
            self.stop()
            raise TestCloudError(
                f"test cloud {self.name} failed to start: {line!r} (log: {self.log_path})"
            )
        self.port = int(line.split()[-1])
        return self

    def _read_line(self, timeout: float) -> str:
        assert self.proc and self.proc.stdout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return "<timeout>"
        return self.proc.stdout.readline().decode().strip()

    def stop(self) -> None:
        """Terminate our server process, by pid; SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def endpoint(self) -> str:
        if self.port is None:
            raise TestCloudError("test cloud not started")
        return f"http://127.0.0.1:{self.port}"

    # -- clients ------------------------------------------------------------------
    def client(self, max_attempts: int | None = None) -> Any:
        """A boto3 EC2 client for checking the cloud from a test (not the code under test)."""
        import boto3
        from botocore.config import Config

        retries: dict[str, Any] = {"mode": "standard"}
        if max_attempts is not None:
            retries["total_max_attempts"] = max_attempts
        return boto3.session.Session().client(
            "ec2",
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(retries=retries),
        )

    def cloud_options(self, access_key_env: str, secret_key_env: str, **extra: Any) -> dict:
        """Options of a plan's / catalog's `provider: ec2` entry pointing at this cloud."""
        return {
            "endpoint": self.endpoint,
            "region": REGION,
            "credentials": {"access_key_env": access_key_env, "secret_key_env": secret_key_env},
            **extra,
        }

    # -- control endpoint -------------------------------------------------------------
    def control(self, what: str, data: dict | None = None) -> dict:
        body = None if data is None else json.dumps(data).encode()
        req = urllib.request.Request(
            f"{self.endpoint}/_testcloud/{what}",
            data=body if body is not None else (b"{}" if what != "stats" else None),
            method="GET" if what == "stats" else "POST",
            headers={"Content-Type": "application/json"},
        )
        with _OPENER.open(req, timeout=30) as resp:
            return json.loads(resp.read())

    def arm(
        self,
        code: str = "InsufficientInstanceCapacity",
        count: int = 1,
        status: int = 500,
        action: str = "RunInstances",
        market: str | None = None,
        delay: float = 0.0,
        after: int = 0,
    ) -> dict:
        """Make the next `count` matching calls fail with `code` (market: spot/on-demand/None).

        With `code=""` and a `delay`, the calls succeed but their answers are
        held back `delay` seconds after the cloud acted (kill the caller then).
        `after`: let that many matching calls succeed first. S3 operations
        (UploadPart, CompleteMultipartUpload, ...) can be armed too.
        """
        return self.control(
            "arm",
            {
                "code": code,
                "count": count,
                "status": status,
                "action": action,
                "market": market,
                "delay": delay,
                "after": after,
            },
        )

    def slow(self, action: str, delay: float, count: int = 1) -> dict:
        """Hold back the answers of the next `count` `action` calls by `delay` seconds."""
        return self.arm(code="", count=count, action=action, delay=delay)

    def s3(self) -> Any:
        """A boto3 S3 client of this cloud's store (moto serves S3 on the same port)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}),
        )

    def set_quota(self, instances: int | None) -> dict:
        return self.control("quota", {"instances": instances})

    def back(self, mapping: dict[str, str]) -> dict:
        """Show these instances with a real local host's address."""
        return self.control("backing", {"map": mapping})

    def set_pool(self, addresses: list[str] | None) -> dict:
        """Back each newly launched instance with the next address (and cap capacity)."""
        return self.control("backing", {"pool": addresses})

    def reset(self) -> dict:
        return self.control("reset")

    def stats(self) -> dict:
        return self.control("stats")

    def calls(self, action: str) -> int:
        return self.stats()["calls"].get(action, 0)

    def live_instances(self, run: str | None = None) -> list[dict]:
        """Pending/running/stopping/stopped instances (of one run, by tag), as boto3 dicts."""
        filters = [
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}
        ]
        if run is not None:
            filters.append({"Name": "tag:cloudinitd:run", "Values": [run]})
        out = []
        for page in self.client().get_paginator("describe_instances").paginate(Filters=filters):
            for res in page["Reservations"]:
                out.extend(res["Instances"])
        return out

    def wait_stopped(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.alive and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.alive
