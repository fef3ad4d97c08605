"""NoCloud seed: how a VM learns its hostname, keys, address and apt proxy.

The same mechanism real clouds use (cloud-init reading a datasource), so
the image carries no per-VM state: a small ISO labelled `cidata` holds
user-data, meta-data and network-config.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from cloudinitd.errors import ProviderError
from cloudinitd.plan import userdata
from cloudinitd.providers.qemu.image import CLOUD_CFG

# The image runs only cloud-init's init stage (its config and final stages are masked:
# each costs a Python start-up under TCG). With the caller's user data, the init stage
# also runs the modules that apply it: boot commands, runcmd, packages and the scripts
# (`scripts_user` runs a `#!` part, as cloud-final would on a cloud).
USER_DATA_MODULES = [
    "bootcmd",
    *yaml.safe_load(CLOUD_CFG)["cloud_init_modules"],
    "runcmd",
    "package_update_upgrade_install",
    "scripts_per_once",
    "scripts_per_boot",
    "scripts_per_instance",
    "scripts_user",
]
# Our parts come after the caller's. cloud-init merges a later cloud-config part over
# the earlier ones; its default replaces a key's whole value, and a merge that appends
# lists also keeps the earlier scalars. So two parts: our lists appended to the caller's
# (their keys and files stay), then everything else, which replaces (our hostname and
# host key win).
LIST_KEYS = ("ssh_authorized_keys", "users", "write_files", "cloud_init_modules",
             "ssh_genkeytypes")
LIST_MERGE = "dict(no_replace,recurse_array)+list(append)+str()"


@dataclass(frozen=True)
class SeedSpec:
    instance_id: str
    hostname: str
    ssh_user: str
    ssh_public_key: str
    address: str
    network: ipaddress.IPv4Network
    gateway: str
    mac: str
    apt_proxy: str | None = None
    # (private OpenSSH PEM, public line) of the VM's ed25519 host key, made on
    # this machine so the engine can pin it before the first connection.
    host_key: tuple[str, str] | None = None
    # The plan's (or group's) user data, bytes as given: merged before ours (seed_user_data).
    user_data: bytes | None = None


def user_data(spec: SeedSpec) -> str:
    # JSON is valid YAML and needs no quoting rules of its own.
    return "#cloud-config\n" + json.dumps(_config(spec), indent=1) + "\n"


def _config(spec: SeedSpec) -> dict:
    keys = [spec.ssh_public_key.strip()]
    cfg: dict = {
        "hostname": spec.hostname,
        "preserve_hostname": False,
        "manage_etc_hosts": True,
        # Keys go to root as well as to the plan's ssh_user, without the
        # "login as the default user" command prefix that disable_root adds.
        "disable_root": False,
        "ssh_pwauth": False,
        "ssh_authorized_keys": keys,
        "users": [],
    }
    if spec.ssh_user != "root":
        cfg["users"] = [
            {
                "name": spec.ssh_user,
                "shell": "/bin/bash",
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "lock_passwd": True,
                "ssh_authorized_keys": keys,
            }
        ]
    if spec.host_key:
        # cc_ssh writes these instead of generating keys (and deletes the image's).
        cfg["ssh_deletekeys"] = True
        cfg["ssh_genkeytypes"] = []
        cfg["ssh_keys"] = {
            "ed25519_private": spec.host_key[0],
            "ed25519_public": spec.host_key[1].strip(),
        }
    if spec.apt_proxy:
        # write_files runs in the init stage, before SSH opens (the apt module
        # belongs to the config stage, which the image skips).
        cfg["write_files"] = [
            {
                "path": "/etc/apt/apt.conf.d/90cloudinitd-proxy",
                "content": f'Acquire::http::Proxy "{spec.apt_proxy}";\n',
                "permissions": "0644",
            }
        ]
    if spec.user_data is not None:
        cfg["cloud_init_modules"] = USER_DATA_MODULES
    return cfg


def seed_user_data(spec: SeedSpec) -> bytes:
    """The seed's user-data: ours alone, or the caller's (a script, cloud-config, MIME,
    gzip inflated, bounded) then ours, as cloud-init multipart."""
    if spec.user_data is None:
        return user_data(spec).encode()
    cfg = _config(spec)
    lists = {k: v for k, v in cfg.items() if k in LIST_KEYS}
    rest = {k: v for k, v in cfg.items() if k not in LIST_KEYS}

    def text(part: dict) -> bytes:
        return ("#cloud-config\n" + json.dumps(part, indent=1) + "\n").encode()

    try:
        return userdata.merged(spec.user_data, [("cloudinitd-lists.cfg", text(lists), LIST_MERGE),
                                                ("cloudinitd.cfg", text(rest), None)])
    except userdata.UserDataError as exc:
        raise ProviderError(f"user_data {exc}") from None


def meta_data(spec: SeedSpec) -> str:
    return json.dumps({"instance-id": spec.instance_id, "local-hostname": spec.hostname}) + "\n"


def network_config(spec: SeedSpec) -> str:
    # Version 1 maps one to one onto ifupdown (the renderer in our image).
    cfg = {
        "version": 1,
        "config": [
            {
                "type": "physical",
                "name": "eth0",
                "mac_address": spec.mac,
                "subnets": [
                    {
                        "type": "static",
                        "address": f"{spec.address}/{spec.network.prefixlen}",
                        "gateway": spec.gateway,
                    }
                ],
            }
        ],
    }
    return json.dumps(cfg, indent=1) + "\n"


def write_seed(spec: SeedSpec, directory: Path) -> Path:
    """Write the three files and pack them into `directory/seed.iso`."""
    src = directory / "seed"
    src.mkdir(parents=True, exist_ok=True)
    (src / "user-data").write_bytes(seed_user_data(spec))
    (src / "meta-data").write_text(meta_data(spec))
    (src / "network-config").write_text(network_config(spec))
    iso = directory / "seed.iso"
    if shutil.which("cloud-localds"):
        cmd = [
            "cloud-localds",
            "-N",
            str(src / "network-config"),
            str(iso),
            str(src / "user-data"),
            str(src / "meta-data"),
        ]
    elif tool := shutil.which("genisoimage") or shutil.which("mkisofs"):
        cmd = [
            tool,
            "-quiet",
            "-output",
            str(iso),
            "-volid",
            "cidata",
            "-joliet",
            "-rock",
            str(src / "user-data"),
            str(src / "meta-data"),
            str(src / "network-config"),
        ]
    else:
        raise ProviderError("qemu provider needs cloud-localds: apt-get install cloud-image-utils")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ProviderError(f"making the NoCloud seed failed: {proc.stderr.strip()[-400:]}")
    return iso
