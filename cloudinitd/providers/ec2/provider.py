"""Ec2Provider: one RunInstances per launch request, ClientToken and tags always.

Works against AWS or any EC2-compatible endpoint (OpenStack's EC2 API,
Eucalyptus, Nimbus, moto). Every instance carries the tags
cloudinitd:run / :service / :plan / :index and Name, so `terminate` finds a
run's instances even when the run store never learnt their ids.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from cloudinitd.errors import CapacityError, ProviderError
from cloudinitd.host.waiting import wait_until
from cloudinitd.plan.model import CloudSpec
from cloudinitd.providers.base import (
    ERROR,
    RUNNING,
    TERMINATED,
    InstanceInfo,
    LaunchRequest,
    OnLaunched,
    Provider,
)
from cloudinitd.providers.ec2.client import error_code, make_client, method_name, translate
from cloudinitd.providers.ec2.images import Ec2ImageHooks
from cloudinitd.providers.ec2.options import Ec2Options, parse_options
from cloudinitd.providers.ec2.shapes import instance_info, run_params
from cloudinitd.providers.ec2.tags import TAG_PREFIX, index_tags

log = logging.getLogger(__name__)

FIND_STATES = ["pending", "running", "stopping", "stopped"]
# Machine image ids (EC2's ami-/aki-/ari-, Eucalyptus' emi-): used as given.
AMI_ID = re.compile(r"^[ae][mkr]i-[0-9a-fA-F]+$")
TAG_WORKERS = 8
DESCRIBE_CHUNK = 200  # ids per filter value list
TERMINATE_CHUNK = 1000
T = TypeVar("T")
# New instances may be missing from DescribeInstances for a moment on AWS
# (eventual consistency): only after this long does "missing" mean "gone".
VISIBILITY_GRACE = 30.0


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


class Ec2Provider(Ec2ImageHooks, Provider):
    kind = "ec2"

    def __init__(self, cloud: CloudSpec, home: Path):
        super().__init__(cloud, home)
        self.opts: Ec2Options = parse_options(cloud)
        self._client: Any = None
        self._lock = threading.Lock()
        self._imported_keys: set[str] = set()
        self._key_lock = threading.Lock()
        self._image_names: dict[str, str] = {}

    # -- plumbing ----------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The boto3 EC2 client (made once; boto3 clients are thread-safe)."""
        with self._lock:
            if self._client is None:
                self._client = make_client(self.opts)
            return self._client

    def _call(self, action: str, **params: Any) -> dict:
        method = getattr(self.client, method_name(action))
        try:
            return method(**params)
        except Exception as exc:
            raise translate(exc, self.opts, action) from None

    def _info(self, inst: dict, index: int | None = None) -> InstanceInfo:
        return instance_info(inst, self.opts.address, index)

    def _instances(self, filters: list[dict]) -> list[dict]:
        found: list[dict] = []
        try:
            paginator = self.client.get_paginator("describe_instances")
            for page in paginator.paginate(Filters=filters):
                for reservation in page.get("Reservations", []):
                    found.extend(reservation.get("Instances", []))
        except ProviderError:
            raise
        except Exception as exc:
            raise translate(exc, self.opts, "DescribeInstances") from None
        return found

    def _by_id(self, instance_ids: Sequence[str]) -> dict[str, dict]:
        # A filter, not InstanceIds=: unknown ids are simply absent instead of
        # failing the whole call with InvalidInstanceID.NotFound.
        found: dict[str, dict] = {}
        for chunk in _chunks(list(dict.fromkeys(instance_ids)), DESCRIBE_CHUNK):
            for inst in self._instances([{"Name": "instance-id", "Values": chunk}]):
                found[inst["InstanceId"]] = inst
        return found

    # -- keys ----------------------------------------------------------------------
    def key_pair_name(self, run: str) -> str:
        return f"cloudinitd-{run}"

    def _key_name(self, request: LaunchRequest) -> str | None:
        chosen = request.options.get("key_name") or self.opts.key_name
        if chosen:
            return chosen
        if not request.ssh_public_key:
            return None
        name = self.key_pair_name(request.run)
        with self._key_lock:  # launches of one run in parallel import the key once
            if name in self._imported_keys:
                return name
            self._import_key(name, request.ssh_public_key)
        return name

    def _import_key(self, name: str, public_key: str) -> None:
        try:
            self._call("ImportKeyPair", KeyName=name, PublicKeyMaterial=public_key.encode())
        except ProviderError as exc:
            if "InvalidKeyPair.Duplicate" not in str(exc):
                raise
        self._imported_keys.add(name)

    def release(self, run: str) -> None:
        """Delete the key pair imported for the run (none when the cloud names its own)."""
        if self.opts.key_name:
            return
        try:
            self._call("DeleteKeyPair", KeyName=self.key_pair_name(run))
        except ProviderError as exc:
            if "NotFound" not in str(exc):
                raise
        with self._key_lock:
            self._imported_keys.discard(self.key_pair_name(run))

    # -- launch --------------------------------------------------------------------
    def _image_id(self, image: str | None) -> str:
        """An AMI id as given; any other name is one of the user's images (`image save/stage`)."""
        chosen = self.opts.image_id(image)
        if AMI_ID.match(chosen):
            return chosen
        with self._lock:
            cached = self._image_names.get(chosen)
        if cached is None:
            from cloudinitd.providers.ec2.images import Ec2Images

            cached = Ec2Images(self).resolve(chosen)
            with self._lock:
                self._image_names[chosen] = cached
        return cached

    def _run_params(self, request: LaunchRequest) -> dict[str, Any]:
        # In this order: the image and type are checked before a key pair is imported.
        image_id = self._image_id(request.image)
        instance_type = self.opts.instance_type(request.size)
        return run_params(request, self.opts, image_id, instance_type, self._key_name(request))

    def launch(self, request: LaunchRequest, on_launched: OnLaunched) -> list[InstanceInfo]:
        if not request.indexes:
            return []
        params = self._run_params(request)
        spot = request.spot or self.opts.spot
        answer, used_spot = None, False
        if spot:
            market: dict[str, Any] = {
                "MarketType": "spot",
                "SpotOptions": {"SpotInstanceType": "one-time"},
            }
            if spot.get("max_price") is not None:
                market["SpotOptions"]["MaxPrice"] = str(spot["max_price"])
            try:
                answer = self._call("RunInstances", **params, InstanceMarketOptions=market)
                used_spot = True
            except CapacityError as exc:
                if str(spot.get("fallback", "")).lower() not in ("on-demand", "ondemand"):
                    raise
                log.info(
                    "%s: spot capacity refused (%s); falling back to on-demand",
                    self.cloud.name,
                    exc,
                )
                # A different token: reusing the spot one with other parameters
                # is an IdempotentParameterMismatch on AWS.
                params["ClientToken"] = request.client_token[:60] + "-od"
        if answer is None:
            answer = self._call("RunInstances", **params)
        instances = sorted(answer.get("Instances", []), key=lambda i: i.get("AmiLaunchIndex", 0))
        infos: list[InstanceInfo] = []
        for inst, index in zip(instances, request.indexes, strict=False):
            info = self._info(inst, index=index)
            info.service = request.service
            if used_spot:
                info.extra["lifecycle"] = "spot"
            infos.append(info)
            on_launched(index, info)
        log.info(
            "%s: RunInstances %s x%d -> %s",
            self.cloud.name,
            request.service,
            len(request.indexes),
            " ".join(i.instance_id for i in infos),
        )
        self._tag_indexes(request, infos)
        if len(infos) < len(request.indexes):
            raise CapacityError(
                f"cloud {self.cloud.name!r}: launched {len(infos)} of {len(request.indexes)} "
                f"instances of {request.service} (the cloud has no room for more)",
                launched=infos,
            )
        return infos

    def _tag_indexes(self, request: LaunchRequest, infos: list[InstanceInfo]) -> None:
        # Indexes differ per instance: one CreateTags each, a few at a time. A
        # failure loses only the index tag; `cloudinitd:indexes` still gives it.
        def tag(pair: tuple[InstanceInfo, str]) -> None:
            info, hostname = pair
            try:
                self._call(
                    "CreateTags",
                    Resources=[info.instance_id],
                    Tags=index_tags(request.run, hostname, info.index or 0),
                )
            except ProviderError as exc:
                log.warning("%s: could not tag %s: %s", self.cloud.name, info.instance_id, exc)

        pairs = list(zip(infos, request.hostnames, strict=False))
        if len(pairs) <= 1:
            for pair in pairs:
                tag(pair)
            return
        with ThreadPoolExecutor(min(TAG_WORKERS, len(pairs))) as pool:
            list(pool.map(tag, pairs))

    # -- observe -------------------------------------------------------------------
    def describe(self, instance_ids: Sequence[str]) -> list[InstanceInfo]:
        found = self._by_id(instance_ids)
        return [
            self._info(found[iid]) if iid in found else InstanceInfo(iid, state=TERMINATED)
            for iid in instance_ids
        ]

    def wait_running(self, instance_ids: Sequence[str], timeout: float) -> list[InstanceInfo]:
        start = time.monotonic()

        def running() -> list[InstanceInfo] | None:
            found = self._by_id(instance_ids)
            waited = time.monotonic() - start
            infos, ready = [], True
            for iid in instance_ids:
                if iid not in found:
                    if waited > VISIBILITY_GRACE:
                        raise ProviderError(f"cloud {self.cloud.name!r}: instance {iid} vanished")
                    ready = False
                    continue
                info = self._info(found[iid])
                if info.state in (TERMINATED, ERROR) or info.extra.get("ec2_state") in (
                    "shutting-down",
                    "stopped",
                ):
                    raise ProviderError(
                        f"cloud {self.cloud.name!r}: instance {iid} is "
                        f"{info.extra.get('ec2_state')} instead of running"
                    )
                ready = ready and info.state == RUNNING and bool(info.address)
                infos.append(info)
            return infos if ready else None

        infos = self._poll(running, timeout)
        if infos is None:
            raise ProviderError(
                f"cloud {self.cloud.name!r}: instances not running with an address "
                f"after {timeout:.0f}s"
            )
        return infos

    def _poll(self, check: Callable[[], T], timeout: float) -> T:
        """Ask the cloud until `check` holds: soon at first, then backing off to the
        cloud's poll interval so a slow cloud is not asked too often."""
        return wait_until(check, timeout, min(0.5, self.opts.poll_interval), backoff=1.5,
                          max_interval=self.opts.poll_interval)

    def find_run_instances(self, run: str) -> list[InstanceInfo]:
        filters = [
            {"Name": f"tag:{TAG_PREFIX}run", "Values": [run]},
            {"Name": "instance-state-name", "Values": FIND_STATES},
        ]
        return [self._info(inst) for inst in self._instances(filters)]

    # -- terminate -----------------------------------------------------------------
    def terminate(self, instance_ids: Sequence[str], timeout: float = 600.0) -> None:
        ids = list(dict.fromkeys(instance_ids))
        if not ids:
            return
        found = self._by_id(ids)
        live = [i for i in ids if i in found and found[i]["State"]["Name"] != "terminated"]
        for chunk in _chunks(live, TERMINATE_CHUNK):
            self._terminate_chunk(chunk)
        log.info("%s: TerminateInstances %s", self.cloud.name, " ".join(live))
        pending = live

        def all_terminated() -> bool:
            nonlocal pending
            found = self._by_id(pending)
            pending = [
                i for i in pending if i in found and found[i]["State"]["Name"] != "terminated"
            ]
            return not pending

        if pending and not self._poll(all_terminated, timeout):
            raise ProviderError(
                f"cloud {self.cloud.name!r}: {len(pending)} instance(s) not terminated after "
                f"{timeout:.0f}s: {' '.join(pending)}"
            )

    def _terminate_chunk(self, chunk: list[str]) -> None:
        try:
            self.client.terminate_instances(InstanceIds=chunk)
        except Exception as exc:
            if error_code(exc) != "InvalidInstanceID.NotFound":
                raise translate(exc, self.opts, "TerminateInstances") from None
            # Some ids vanished meanwhile: terminate the others one by one.
            for iid in chunk:
                try:
                    self.client.terminate_instances(InstanceIds=[iid])
                except Exception as one:
                    if error_code(one) != "InvalidInstanceID.NotFound":
                        raise translate(one, self.opts, "TerminateInstances") from None

    # -- check -----------------------------------------------------------------------
    def check(self) -> str:
        answer = self._call("DescribeAvailabilityZones")
        zones = [z.get("ZoneName", "?") for z in answer.get("AvailabilityZones", [])]
        region = self.client.meta.region_name
        shown = ", ".join(zones[:3]) + (", ..." if len(zones) > 3 else "")
        return (
            f"ec2 {self.opts.endpoint or 'AWS'} region {region}: {len(zones)} zone(s) "
            f"({shown}); credentials from {self.opts.credentials.describe()} accepted"
        )


__all__ = ["Ec2Provider"]
