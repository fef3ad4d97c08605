"""/etc/hosts of a run: every instance of the run by hostname, in every instance."""

from __future__ import annotations

import logging
from pathlib import Path

from cloudinitd.errors import ProviderError
from cloudinitd.providers import hostnet
from cloudinitd.providers.local import instance as inst
from cloudinitd.providers.local import lxc

log = logging.getLogger("cloudinitd.local")


def hosts_file(entries: list[tuple[str, str]], gateway: str) -> str:
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "ff02::1\tip6-allnodes",
        "ff02::2\tip6-allrouters",
        "",
        "# cloudinitd: the machine running cloudinitd, and every instance of this run",
        f"{gateway}\tcloudinitd-home",
    ]
    lines += [f"{address}\t{hostname}" for address, hostname in sorted(entries, key=lambda e: e[1])]
    return "\n".join(lines) + "\n"


def refresh_hosts(lxcpath: Path, run: str) -> None:
    """Rewrite /etc/hosts in every container of `run` under lxcpath.

    Call with the provider's lxcpath lock held. Running containers write it
    themselves (lxc-attach); stopped ones get it in their upper layer,
    without following anything the guest left there.
    """
    members = {n: m for n, m in inst.all_sidecars(lxcpath).items()
               if m.get("run") == run and m.get("address")}  # half-made ones have none yet
    if not members:
        return
    gateway = hostnet.bridge_config().gateway
    text = hosts_file(
        [(m["address"], inst.uts_name(m["hostname"])) for m in members.values()], gateway
    )
    states = lxc.states(lxcpath)
    for name, meta in members.items():
        state, pid = states.get(name, (None, None))
        try:
            if state in ("RUNNING", "STARTING") and pid:
                inst.write_running_file(name, lxcpath, "/etc/hosts", text)
            else:
                upper = inst.upper_dir(lxcpath / name)
                inst.write_guest_file(upper, Path(meta["lower"]), "/etc/hosts", text)
        except (OSError, ProviderError) as exc:  # a container going away meanwhile: not fatal
            log.warning("could not update /etc/hosts in %s: %s", name, exc)
