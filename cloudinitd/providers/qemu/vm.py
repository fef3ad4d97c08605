"""One QEMU virtual machine on the host: its folder, tap, process and console.

Everything about a VM lives in `$CLOUDINITD_HOME/qemu/<instance_id>/`:
`vm.json` (sidecar: tags, address, tap, pid), `overlay.qcow2`, `seed.iso`,
`serial.log`, `qemu.pid`, `qmp.sock`. The sidecar is written before any
resource exists, so a crash at any point leaves something `clean` can find.
"""

from __future__ import annotations

import contextlib
import json
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cloudinitd.errors import ProviderError
from cloudinitd.host import procs
from cloudinitd.textsafe import for_terminal

TAP_PREFIX = "cidq"
QEMU = "qemu-system-x86_64"
# QEMU drops root for this system user once it has opened its disks, tap,
# serial file and QMP socket (it needs none of them reopened later).
RUNAS_USER = "cloudinitd-qemu"
# QEMU's seccomp filter. Measured with QEMU 7.2: `elevateprivileges=deny`
# kills QEMU at -runas's setuid and `spawn=deny` at -daemonize's fork (both
# come after the filter is installed); once -runas has run, the process has
# no capabilities, so it cannot regain privileges either way.
SANDBOX = "on,obsolete=deny,resourcecontrol=deny"
REQUIRED_TOOLS = {
    QEMU: "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "debootstrap": "debootstrap",
    "cloud-localds": "cloud-image-utils",
    "mkfs.ext4": "e2fsprogs",
    "ip": "iproute2",
}


def missing_tools() -> list[str]:
    """'tool (apt package)' for every required tool not on PATH."""
    return [
        f"{tool} (apt-get install {pkg})"
        for tool, pkg in REQUIRED_TOOLS.items()
        if shutil.which(tool) is None
    ]


@dataclass
class VmFiles:
    dir: Path

    @property
    def sidecar(self) -> Path:
        return self.dir / "vm.json"

    @property
    def overlay(self) -> Path:
        return self.dir / "overlay.qcow2"

    @property
    def serial(self) -> Path:
        return self.dir / "serial.log"

    @property
    def pidfile(self) -> Path:
        return self.dir / "qemu.pid"

    @property
    def qmp(self) -> Path:
        return self.dir / "qmp.sock"

    def read(self) -> dict:
        try:
            return json.loads(self.sidecar.read_text())
        except (OSError, ValueError):
            return {}

    def write(self, data: dict) -> None:
        tmp = self.sidecar.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(self.sidecar)

    def update(self, **changes) -> dict:
        data = self.read()
        data.update(changes)
        self.write(data)
        return data

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        pid = self.pid()
        return pid is not None and pid_is_our_qemu(pid, self.dir)

    def serial_tail(self, lines: int = 25) -> str:
        try:
            text = self.serial.read_bytes().decode(errors="replace")
        except OSError:
            return "(no serial log)"
        # The guest writes the console: strip what a terminal would obey.
        return "\n".join(for_terminal(text).splitlines()[-lines:])


def pid_is_our_qemu(pid: int, vm_dir: Path) -> bool:
    """True when `pid` is a live (not zombie) qemu started for `vm_dir`.

    The pid file alone is not proof: pids are reused, and a daemonized qemu
    whose parent does not reap it lingers as a zombie.
    """
    return _our_qemu(pid, vm_dir) is not None


def _our_qemu(pid: int | None, vm_dir: Path) -> procs.Proc | None:
    return procs.find(pid, str(vm_dir))


def tap_name(instance_id: str) -> str:
    # Interface names are limited to 15 characters.
    return (TAP_PREFIX + instance_id.removeprefix("qemu-"))[:15]


def mac_for(address: str) -> str:
    a, b, c, d = (int(x) for x in address.split("."))
    return f"52:54:{a:02x}:{b:02x}:{c:02x}:{d:02x}"


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


def create_tap(name: str, bridge: str) -> None:
    if Path("/sys/class/net", name).exists():
        _ip("link", "del", name)
    for args in (
        ("tuntap", "add", "dev", name, "mode", "tap"),
        ("link", "set", name, "master", bridge),
        ("link", "set", name, "up"),
    ):
        proc = _ip(*args)
        if proc.returncode != 0:
            raise ProviderError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def delete_tap(name: str) -> None:
    if Path("/sys/class/net", name).exists():
        _ip("link", "del", name)


def our_taps() -> list[str]:
    return sorted(p.name for p in Path("/sys/class/net").iterdir() if p.name.startswith(TAP_PREFIX))


def tap_in_use(name: str) -> bool:
    """A process holds the tap open (carrier up) or a live qemu names it."""
    try:
        if Path("/sys/class/net", name, "carrier").read_text().strip() == "1":
            return True
    except OSError:
        pass
    return bool(procs.with_argument(f"ifname={name},"))


def create_overlay(base: Path, overlay: Path) -> None:
    proc = subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(overlay)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise ProviderError(f"qemu-img create overlay: {proc.stderr.strip()}")


def qemu_command(
    files: VmFiles,
    *,
    kernel: Path,
    initrd: Path,
    seed: Path,
    tap: str,
    mac: str,
    memory_mb: int,
    cpus: int,
    accel: str,
) -> list[str]:
    cpu = "host" if accel == "kvm" else "max"
    return [
        QEMU,
        "-name",
        files.dir.name,
        "-machine",
        "pc",
        "-accel",
        accel,
        "-cpu",
        cpu,
        "-m",
        str(memory_mb),
        "-smp",
        str(cpus),
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-vga",
        "none",
        "-kernel",
        str(kernel),
        "-initrd",
        str(initrd),
        # net.ifnames=0: the NIC is eth0, as named in the seed's network-config.
        # mitigations=off, tsc=reliable: speculation barriers and clocksource
        # checks cost a lot under emulation and protect nothing in a throwaway VM.
        "-append",
        "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet loglevel=3 "
        "systemd.show_status=1 panic=-1 mitigations=off tsc=reliable no_timer_check",
        # cache=unsafe: the overlay is thrown away with the VM, so skip fsyncs.
        "-drive",
        f"file={files.overlay},if=virtio,format=qcow2,cache=unsafe",
        "-drive",
        f"file={seed},if=virtio,format=raw,readonly=on",
        "-netdev",
        f"tap,id=n0,ifname={tap},script=no,downscript=no",
        "-device",
        f"virtio-net-pci,netdev=n0,mac={mac}",
        # Entropy for sshd host keys and the first SSH handshakes.
        "-device",
        "virtio-rng-pci",
        "-serial",
        f"file:{files.serial}",
        "-qmp",
        f"unix:{files.qmp},server=on,wait=off",
        "-pidfile",
        str(files.pidfile),
        "-sandbox",
        SANDBOX,
        "-runas",
        RUNAS_USER,
        "-daemonize",
    ]


def ensure_runas_user(user: str = RUNAS_USER) -> None:
    """Create the unprivileged system user QEMU runs as, once (safe to race)."""
    try:
        pwd.getpwnam(user)
        return
    except KeyError:
        pass
    proc = subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", "--comment", "cloudinitd QEMU VMs", user],
        capture_output=True,
        text=True,
    )
    try:
        pwd.getpwnam(user)  # made here, or by a concurrent launch
    except KeyError:
        raise ProviderError(
            f"could not create the system user {user} for QEMU: {proc.stderr.strip()}"
        ) from None


def start(cmd: list[str], files: VmFiles) -> int:
    if "-runas" in cmd:
        ensure_runas_user(cmd[cmd.index("-runas") + 1])
    with (files.dir / "qemu.stderr").open("w") as err:
        proc = subprocess.run(cmd, stdout=err, stderr=subprocess.STDOUT, timeout=60)
    if proc.returncode != 0:
        msg = (files.dir / "qemu.stderr").read_text(errors="replace").strip()[-600:]
        raise ProviderError(f"qemu failed to start {files.dir.name}: {msg}")
    pid = files.pid()
    if pid is None:
        raise ProviderError(f"qemu started {files.dir.name} but wrote no pid file")
    return pid


def _qmp_quit(sock_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect(str(sock_path))
        f = s.makefile("rwb")
        f.readline()  # greeting
        for cmd in ({"execute": "qmp_capabilities"}, {"execute": "quit"}):
            f.write(json.dumps(cmd).encode() + b"\n")
            f.flush()
            f.readline()


def stop(files: VmFiles, timeout: float = 20.0) -> None:
    """Power the VM off now (its disk is discarded, so no clean shutdown is needed)."""
    qemu = _our_qemu(files.pid(), files.dir)
    if qemu is None:
        return
    with contextlib.suppress(OSError, ValueError):
        _qmp_quit(files.qmp)
    if procs.wait_gone(qemu, 5.0, interval=0.1):
        return
    if not procs.stop(qemu, grace=timeout, kill_wait=10.0):
        raise ProviderError(f"qemu pid {qemu.pid} ({files.dir.name}) did not exit")
