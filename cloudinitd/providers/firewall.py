"""nftables rules for our bridge: who may say what on it, and what instances reach here.

Per instance port (an LXC veth or a qemu tap, named by us):
- anti-spoofing: only the MAC we assigned and the address we leased may
  leave the port, for IPv4 and ARP alike; nothing else (no IPv6, no VLAN
  tags, no other ethertypes);
- isolation between runs: a frame from the port is forwarded only to ports
  of the same run (the gateway is not a port: see below);
and for the machine itself (the gateway address on the bridge), instances
may open only the apt proxy port and ports granted to their run
(`allow_gateway_port`, e.g. the run's home share), plus ping; replies to
connections this machine opened (SSH to instances) pass by conntrack.

Rules live in two tables named after the bridge (`bridge` family for the
ports, `inet` family for local delivery, where conntrack exists) and are
rebuilt whole from a small JSON state in the lease folder in one atomic
`nft -f` transaction on every change, so a crash never leaves half a rule
set. Callers hold the lease lock (see `hostnet`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from cloudinitd.errors import ProviderError

STATE = "firewall.json"
# Hooks of the bridge family see every bridge of the machine, and this
# kernel cannot match the bridge a port belongs to (no nft_meta_bridge): so a
# table only ever names its own ports, never patterns that could match the
# ports of another bridge (a test's, another lease folder's). Ports get their
# rules before their instance starts (`hostnet.attach_port`).


def table_name(bridge: str) -> str:
    return "cloudinitd_" + re.sub(r"[^A-Za-z0-9_]", "_", bridge)


def read_state(d: Path) -> dict[str, Any]:
    try:
        state = json.loads((d / STATE).read_text())
    except (FileNotFoundError, ValueError):
        state = {}
    state.setdefault("ports", {})  # port name -> {run, address, mac, owner}
    state.setdefault("gateway_ports", {})  # run key -> [tcp port, ...]
    return state


def write_state(d: Path, state: dict[str, Any]) -> None:
    tmp = d / (STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    tmp.replace(d / STATE)


def _q(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]+", name):
        raise ProviderError(f"firewall: refusing odd interface name {name!r}")
    return f'"{name}"'


def _chain(name: str) -> str:
    return "p_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


def render(bridge: str, gateway: str, apt_port: int, state: dict[str, Any]) -> str:
    """The complete rule set for one bridge (both tables), as `nft -f` input."""
    table = table_name(bridge)
    ports: dict[str, dict[str, Any]] = state["ports"]
    runs: dict[str, list[str]] = {}
    for port, p in sorted(ports.items()):
        runs.setdefault(p["run"], []).append(port)
    pre = [f"iifname {_q(port)} jump {_chain(port)}" for port in sorted(ports)]
    fwd = []
    port_chains = []
    for port, p in sorted(ports.items()):
        mates = ", ".join(_q(m) for m in runs[p["run"]])
        fwd.append(f"iifname {_q(port)} oifname != {{ {mates} }} drop")
        mac, addr = p["mac"], p["address"]
        port_chains.append(
            f"""
  chain {_chain(port)} {{
    ether saddr != {mac} drop
    ether type arp arp htype 1 arp ptype ip arp saddr ether {mac} arp saddr ip {{ {addr}, 0.0.0.0 }} accept
    ether type ip ip saddr {addr} accept
    drop
  }}"""
        )
    allow = []
    for run, tcp_ports in sorted(state["gateway_ports"].items()):
        addrs = [ports[port]["address"] for port in runs.get(run, [])]
        for tcp in sorted(set(tcp_ports)):
            allow += [f"{a} . {int(tcp)}" for a in addrs]
    allow_rule = (
        f"ip saddr . tcp dport {{ {', '.join(allow)} }} ip daddr {gateway} accept" if allow else ""
    )
    return f"""
table bridge {table} {{}}
delete table bridge {table}
table bridge {table} {{
  chain port_filter {{
    type filter hook prerouting priority -300; policy accept;
    {chr(10).join('    ' + r for r in pre).strip()}
  }}
  chain run_isolation {{
    type filter hook forward priority 0; policy accept;
    {chr(10).join('    ' + r for r in fwd).strip()}
  }}
{''.join(port_chains)}
}}
table inet {table} {{}}
delete table inet {table}
table inet {table} {{
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname {_q(bridge)} jump from_instances
  }}
  chain from_instances {{
    ct state established,related accept
    ip daddr {gateway} icmp type echo-request accept
    ip daddr {gateway} tcp dport {int(apt_port)} accept
    {allow_rule}
    drop
  }}
}}
"""


def remove_text(bridge: str) -> str:
    table = table_name(bridge)
    return (
        f"table bridge {table} {{}}\ndelete table bridge {table}\n"
        f"table inet {table} {{}}\ndelete table inet {table}\n"
    )


def nft(text: str) -> None:
    """Apply `text` in one transaction."""
    binary = shutil.which("nft") or "/usr/sbin/nft"
    if not Path(binary).exists():
        raise ProviderError("nft not found: apt-get install nftables")
    proc = subprocess.run([binary, "-f", "-"], input=text, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ProviderError(f"nft: {proc.stderr.strip()[-800:]}")


def ruleset(bridge: str) -> str:
    """Both tables as nft lists them (for tests and `clean` diagnostics)."""
    table = table_name(bridge)
    out = []
    for family in ("bridge", "inet"):
        proc = subprocess.run(
            ["nft", "list", "table", family, table], capture_output=True, text=True
        )
        out.append(proc.stdout)
    return "".join(out)
