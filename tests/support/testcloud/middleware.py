"""WSGI middleware that turns a moto server into a small, controllable EC2 cloud.

moto answers the EC2 API but has no notion of a full cloud, of ClientToken
idempotency or of real hosts behind its instances. This middleware sits in
front of moto's `DomainDispatcherApplication` (same process, so it may read
moto's backends) and adds:

- a per-cloud instance quota: RunInstances answers `InstanceLimitExceeded`
  (HTTP 400) when pending+running + MinCount would pass it. When MinCount
  fits but MaxCount does not, it launches only as many as fit, the way AWS
  does ("launches the largest number of instances above MinCount"); the
  caller sees fewer instances than it asked for.
- armed faults: the next N matching calls answer an error (default
  `InsufficientInstanceCapacity`, HTTP 500), optionally only for spot
  launches. botocore retries HTTP 500: arm as many faults as the client
  makes attempts, or arm them with status 400.
- AWS's MinCount/MaxCount semantics (moto launches MinCount and ignores
  MaxCount): as many as fit, up to MaxCount.
- ClientToken idempotency (moto stores the token but ignores it): a second
  RunInstances with a token already seen answers the first reservation again
  and creates nothing.
- optional backing: an instance id may be mapped to the address of a real
  local host (a loopback sshd, a `local` container). DescribeInstances and
  RunInstances answers then show THAT address as both public and private
  address. A pool of addresses can be registered in advance; each launched
  instance takes the next one (the pool then also caps capacity) and gives
  it back on TerminateInstances.
- call counting per Action, for tests and benchmarks.

Control endpoint (JSON in, JSON out), on the same port:
  POST /_testcloud/arm      {"code", "count", "status", "action", "market", "delay"}
                            (code "" + delay: the call succeeds, its answer comes late)
  POST /_testcloud/quota    {"instances": N | null}
  POST /_testcloud/backing  {"map": {instance_id: address}, "pool": [address, ...]}
  POST /_testcloud/reset    clears moto state, faults, quota, backing, tokens, counts
  GET  /_testcloud/stats    {"calls": {...}, "live": N, "quota": N|null, "backing": {...}}

Instances without backing keep moto's invented addresses (54.x, 10.x): they
belong to nobody and must never be contacted.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

LIVE = ("pending", "running")
INSTANCE_ID = re.compile(rb"<instanceId>(i-[0-9a-f]+)</instanceId>")

StartResponse = Callable[..., Any]


@dataclass
class Fault:
    code: str
    count: int
    status: int = 500
    action: str = "RunInstances"
    market: str | None = None  # "spot" / "on-demand" / None for any
    delay: float = 0.0  # seconds; with code "" the call succeeds, its answer held back
    after: int = 0  # let this many matching calls through first (fail the 3rd UploadPart)
    message: str = (
        "We currently do not have sufficient capacity in the Availability Zone you requested."
    )


def _error_xml(code: str, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>"
        f"</Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>"
    ).encode()


def _s3_error_xml(code: str, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{uuid.uuid4()}</RequestId></Error>"
    ).encode()


def s3_action(environ: dict) -> str | None:
    """The S3 operation of a request (signed for service s3), else None.

    S3 names its operations by method and query, not by an `Action`
    parameter: enough of them to count calls and arm faults on uploads.
    """
    if "/s3/aws4_request" not in environ.get("HTTP_AUTHORIZATION", ""):
        return None
    query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    method = environ.get("REQUEST_METHOD", "")
    path = environ.get("PATH_INFO", "/").strip("/")
    on_object = "/" in path
    table = {
        ("PUT", True, "partNumber"): "UploadPart",
        ("POST", True, "uploads"): "CreateMultipartUpload",
        ("POST", True, "uploadId"): "CompleteMultipartUpload",
        ("DELETE", True, "uploadId"): "AbortMultipartUpload",
        ("GET", True, "uploadId"): "ListParts",
        ("GET", False, "uploads"): "ListMultipartUploads",
    }
    for (m, obj, param), name in table.items():
        if method == m and on_object == obj and param in query:
            return name
    plain = {
        ("PUT", True): "PutObject", ("GET", True): "GetObject", ("HEAD", True): "HeadObject",
        ("DELETE", True): "DeleteObject", ("PUT", False): "CreateBucket",
        ("HEAD", False): "HeadBucket", ("GET", False): "ListObjects",
        ("DELETE", False): "DeleteBucket",
    }  # fmt: skip
    return plain.get((method, on_object), f"S3:{method}")


def _moto_instances() -> list[Any]:
    """Every instance moto holds, across the accounts and regions it created."""
    from moto.ec2.models import ec2_backends

    found = []
    # dict.values: only backends already created (BackendDict creates on access).
    # list(): another request thread may create a backend meanwhile.
    for account in list(dict.values(ec2_backends)):
        for backend in list(dict.values(account)):
            found.extend(backend.all_instances())
    return found


class TestCloudMiddleware:
    def __init__(self, app: Callable[..., Iterable[bytes]]):
        self.app = app
        self.lock = threading.Lock()
        self.launch_lock = threading.Lock()  # quota check + launch must be atomic
        self._clear()

    def _clear(self) -> None:
        self.faults: list[Fault] = []
        self.quota: int | None = None
        self.backing: dict[str, str] = {}
        self.pool: list[str] | None = None
        self.pool_taken: set[str] = set()  # instance ids whose address came from the pool
        self.tokens: dict[str, tuple[str, list[tuple[str, str]], bytes]] = {}
        self.calls: Counter[str] = Counter()

    # -- WSGI ---------------------------------------------------------------
    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_testcloud/"):
            return self._control(path, environ, start_response)
        s3 = s3_action(environ)
        if s3 is not None:
            return self._s3(s3, environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        body = self._read_body(environ)
        params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        action = params.get("Action", "")
        with self.lock:
            self.calls[action] += 1
        fault = self._take_fault(action, params)
        if fault and fault.code:
            time.sleep(fault.delay)
            return self._respond(
                start_response, fault.status, _error_xml(fault.code, fault.message)
            )
        answer = self._dispatch(action, environ, start_response, params)
        if fault and fault.delay:
            # The cloud has acted; the caller waits for the answer (a slow or
            # lost reply). Tests kill the caller during this pause.
            time.sleep(fault.delay)
        return answer

    def _s3(self, action: str, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        """S3 requests: counted, and failed when a fault is armed for their operation."""
        with self.lock:
            self.calls[action] += 1
        fault = self._take_fault(action, {})
        if fault and fault.code:
            self._read_body(environ)  # drain the upload so the connection stays usable
            time.sleep(fault.delay)
            return self._respond(
                start_response, fault.status, _s3_error_xml(fault.code, fault.message),
                content_type="application/xml",
            )
        answer = self.app(environ, start_response)
        if fault and fault.delay:
            time.sleep(fault.delay)
        return answer

    def _dispatch(
        self, action: str, environ: dict, start_response: StartResponse, params: dict[str, str]
    ) -> Iterable[bytes]:
        if action == "RunInstances":
            with self.launch_lock:
                return self._run_instances(environ, start_response, params)
        if action == "DescribeInstances":
            status, headers, out = self._call(environ)
            return self._respond(start_response, status, self._rewrite(out), headers)
        if action == "TerminateInstances":
            status, headers, out = self._call(environ)
            if status.startswith("200"):
                self._release(params)
            return self._respond(start_response, status, out, headers)
        return self.app(environ, start_response)

    @staticmethod
    def _read_body(environ: dict) -> bytes:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        return body

    @staticmethod
    def _set_body(environ: dict, params: dict[str, str]) -> None:
        body = urlencode(params).encode()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))

    def _call(self, environ: dict) -> tuple[str, list[tuple[str, str]], bytes]:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            captured["status"], captured["headers"] = status, headers

        chunks = self.app(environ, capture)
        try:
            out = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
        return captured["status"], captured["headers"], out

    @staticmethod
    def _respond(
        start_response: StartResponse,
        status: int | str,
        body: bytes,
        headers: list[tuple[str, str]] | None = None,
        content_type: str = "text/xml",
    ) -> list[bytes]:
        if isinstance(status, int):
            status = f"{status} {'OK' if status == 200 else 'Error'}"
        kept = [(k, v) for k, v in (headers or []) if k.lower() != "content-length"]
        if not any(k.lower() == "content-type" for k, _ in kept):
            kept.append(("Content-Type", content_type))
        kept.append(("Content-Length", str(len(body))))
        start_response(status, kept)
        return [body]

    # -- faults, quota, tokens ------------------------------------------------
    def _take_fault(self, action: str, params: dict[str, str]) -> Fault | None:
        market = "spot" if params.get("InstanceMarketOptions.MarketType") == "spot" else "on-demand"
        with self.lock:
            for fault in self.faults:
                if fault.action != action or fault.count <= 0:
                    continue
                if fault.market and fault.market != market:
                    continue
                if fault.after > 0:
                    fault.after -= 1
                    return None
                fault.count -= 1
                return fault
        return None

    def _run_instances(
        self, environ: dict, start_response: StartResponse, params: dict[str, str]
    ) -> list[bytes]:
        token = params.get("ClientToken")
        if token and token in self.tokens:
            status, headers, out = self.tokens[token]
            return self._respond(start_response, status, self._rewrite(out), headers)
        min_count = int(params.get("MinCount", "1"))
        max_count = int(params.get("MaxCount", str(min_count)))
        room = self._room()
        if room is not None and room < min_count:
            message = (
                f"You have requested more instances ({min_count}) than your current instance "
                f"limit allows (room for {room} more on this test cloud)."
            )
            return self._respond(start_response, 400, _error_xml("InstanceLimitExceeded", message))
        # moto launches MinCount instances and ignores MaxCount; AWS launches
        # as many as fit up to MaxCount. Ask moto for exactly that many.
        count = max_count if room is None else min(room, max_count)
        params["MinCount"] = params["MaxCount"] = str(count)
        self._set_body(environ, params)
        status, headers, out = self._call(environ)
        if status.startswith("200"):
            if token:
                self.tokens[token] = (status, headers, out)
            self._assign_pool([m.decode() for m in INSTANCE_ID.findall(out)])
        return self._respond(start_response, status, self._rewrite(out), headers)

    def _room(self) -> int | None:
        limits = []
        if self.quota is not None:
            live = sum(1 for i in _moto_instances() if i.state in LIVE)
            limits.append(max(self.quota - live, 0))
        if self.pool is not None:
            limits.append(len(self.pool))
        return min(limits) if limits else None

    # -- backing ---------------------------------------------------------------
    def _assign_pool(self, instance_ids: list[str]) -> None:
        with self.lock:
            if self.pool is None:
                return
            for iid in instance_ids:
                if iid in self.backing or not self.pool:
                    continue
                self.backing[iid] = self.pool.pop(0)
                self.pool_taken.add(iid)

    def _release(self, params: dict[str, str]) -> None:
        ids = [v for k, v in params.items() if k.startswith("InstanceId.")]
        with self.lock:
            for iid in ids:
                if iid in self.pool_taken and self.pool is not None:
                    self.pool.append(self.backing.pop(iid))
                    self.pool_taken.discard(iid)

    def _rewrite(self, out: bytes) -> bytes:
        """Show backed instances with their real host's address instead of moto's."""
        with self.lock:
            backing = dict(self.backing)
        if not backing:
            return out
        ids = {m.decode() for m in INSTANCE_ID.findall(out)} & backing.keys()
        if not ids:
            return out
        invented = {i.id: i for i in _moto_instances() if i.id in ids}
        for iid in ids:
            instance = invented.get(iid)
            if instance is None:
                continue
            real = backing[iid].encode()
            for fake in (instance.private_ip, instance.public_ip):
                if fake:
                    # Delimited by tags: never touch a longer address sharing a prefix.
                    out = out.replace(b">" + fake.encode() + b"<", b">" + real + b"<")
        return out

    # -- control endpoint --------------------------------------------------------
    def _control(self, path: str, environ: dict, start_response: StartResponse) -> list[bytes]:
        try:
            raw = self._read_body(environ)
            data = json.loads(raw) if raw.strip() else {}
            answer = self._control_action(path.removeprefix("/_testcloud/"), data)
        except (ValueError, KeyError, TypeError) as exc:
            body = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
            return self._respond(start_response, 400, body, content_type="application/json")
        body = json.dumps(answer).encode()
        return self._respond(start_response, 200, body, content_type="application/json")

    def _control_action(self, what: str, data: dict[str, Any]) -> dict[str, Any]:
        if what == "arm":
            fault = Fault(
                code=data.get("code", "InsufficientInstanceCapacity"),
                count=int(data.get("count", 1)),
                status=int(data.get("status", 500)),
                action=data.get("action", "RunInstances"),
                market=data.get("market"),
                delay=float(data.get("delay", 0)),
                after=int(data.get("after", 0)),
            )
            if "message" in data:
                fault.message = data["message"]
            with self.lock:
                self.faults.append(fault)
        elif what == "quota":
            q = data.get("instances")
            with self.launch_lock:
                self.quota = None if q is None else int(q)
        elif what == "backing":
            with self.lock:
                self.backing.update({str(k): str(v) for k, v in data.get("map", {}).items()})
                if "pool" in data:
                    pool = data["pool"]
                    self.pool = None if pool is None else [str(a) for a in pool]
        elif what == "reset":
            from moto.moto_api import _internal

            with self.launch_lock, self.lock:
                _internal.moto_api_backend.reset()
                self._clear()
        elif what != "stats":
            raise KeyError(f"unknown control action {what!r}")
        return self._stats()

    def _stats(self) -> dict[str, Any]:
        live = sum(1 for i in _moto_instances() if i.state in LIVE)
        with self.lock:
            return {
                "calls": dict(self.calls),
                "live": live,
                "quota": self.quota,
                "faults": [f.__dict__ for f in self.faults if f.count > 0],
                "backing": dict(self.backing),
                "pool": None if self.pool is None else list(self.pool),
            }
