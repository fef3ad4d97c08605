"""`static`: services on hosts that already exist. Launches nothing, destroys nothing.

The engine passes the addresses (a literal `host:` address, or the
addresses of the instances of the service named in `host:`) in
`request.options["addresses"]`, one per index.
"""

from __future__ import annotations

from collections.abc import Sequence

from cloudinitd.providers.base import (
    RUNNING,
    InstanceInfo,
    LaunchRequest,
    OnLaunched,
    Provider,
)


def static_id(address: str, index: int) -> str:
    return f"static:{address}#{index}"


class StaticProvider(Provider):
    kind = "static"

    def launch(self, request: LaunchRequest, on_launched: OnLaunched) -> list[InstanceInfo]:
        addresses = request.options["addresses"]
        infos = []
        for index, address in zip(request.indexes, addresses, strict=True):
            # An existing host's name is what it reports (learned at first connect,
            # see engine/configure.py); until then, the address SSH uses.
            info = InstanceInfo(instance_id=static_id(address, index), state=RUNNING,
                                address=address, private_address=address, hostname=address,
                                index=index, service=request.service)
            on_launched(index, info)
            infos.append(info)
        return infos

    def wait_running(self, instance_ids: Sequence[str], timeout: float) -> list[InstanceInfo]:
        return self.describe(instance_ids)

    def describe(self, instance_ids: Sequence[str]) -> list[InstanceInfo]:
        infos = []
        for iid in instance_ids:
            address = iid.removeprefix("static:").rpartition("#")[0]
            infos.append(InstanceInfo(instance_id=iid, state=RUNNING, address=address,
                                      private_address=address))
        return infos

    def terminate(self, instance_ids: Sequence[str], timeout: float = 600.0) -> None:
        """Existing hosts outlive the run: nothing to destroy."""

    def find_run_instances(self, run: str) -> list[InstanceInfo]:
        return []

