"""Disks of qemu images: a running VM's overlay saved as a standalone image; a file staged.

`image save`: the VM is paused through QMP (`stop` also flushes QEMU's block
layer, so the overlay file is whole on this machine), or powered down with
`--stop`; `qemu-img convert` then reads the overlay with its backing chain
into one standalone (sparse raw) disk, and the VM continues. Every account's
login keys and the machine id are taken out of that disk offline
(offline.forget_identity), and it is packed as the image's qcow2. The kernel and
initrd the VM booted (QEMU boots them directly) are copied beside it.

`image stage`: a raw or qcow2 file, its format told by its first bytes and
passed to qemu-img explicitly (a raw file is never probed); refused with a
backing file or an external data file (they would name files on this
machine), above MAX_VIRTUAL, or when it is not a whole-disk ext4 as
cloudinitd's images are (QEMU boots it with root=/dev/vda and the built-in
image's kernel).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cloudinitd.errors import ProviderError, UsageError
from cloudinitd.host.waiting import wait_until
from cloudinitd.providers import imagecache, loginkeys
from cloudinitd.providers.base import Say, say_nothing
from cloudinitd.providers.qemu import offline, vm

MAX_VIRTUAL = 64 << 30
EXT4_MAGIC_AT = 1080  # the superblock is at 1024; s_magic 0xEF53 at offset 56 in it
_PERCENT = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")


def qmp(sock: Path, *commands: str) -> None:
    """Run QMP commands in order; ProviderError on any error answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(60)
        s.connect(str(sock))
        f = s.makefile("rwb")
        f.readline()  # greeting
        for command in ("qmp_capabilities", *commands):
            f.write(json.dumps({"execute": command}).encode() + b"\n")
            f.flush()
            while True:
                answer = json.loads(f.readline() or b"{}")
                if "event" not in answer:  # events (STOP, RESUME) come between answers
                    break
            if "error" in answer or "return" not in answer:
                raise ProviderError(f"QMP {command}: {answer.get('error', answer)}")


def info(path: Path, fmt: str | None = None, shared: bool = False) -> dict[str, Any]:
    cmd = ["qemu-img", "info", "--output=json"]
    if fmt:
        cmd += ["-f", fmt]
    if shared:
        cmd.append("-U")  # the running QEMU holds the image's lock
    proc = subprocess.run([*cmd, str(path)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise UsageError(f"{path}: qemu-img cannot read it as {fmt or 'an image'}: "
                         f"{proc.stderr.strip()[-300:]}")
    return json.loads(proc.stdout)



def convert(source: Path, fmt: str, target: Path, say: Say, shared: bool = False,
            sent: Callable[[float], None] | None = None, to: str = "qcow2") -> None:
    """qemu-img convert to a standalone image, saying how far it got every quarter."""
    cmd = ["qemu-img", "convert", "-p", "-f", fmt, "-O", to]
    if shared:
        cmd.append("-U")
    proc = subprocess.Popen([*cmd, str(source), str(target)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None
    shown = done = 0.0
    while chunk := proc.stdout.read1(4096):  # type: ignore[attr-defined]
        for match in _PERCENT.finditer(chunk):
            percent = float(match.group(1))
            if sent is not None and percent > done:
                sent(percent - done)
            done = max(done, percent)
            if percent >= shown + 25:
                shown = percent // 25 * 25
                say(f"converted {percent:.0f}%")
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.wait() != 0:
        raise ProviderError(f"qemu-img convert {source.name}: {err.strip()[-400:]}")


@contextlib.contextmanager
def held_still(files: vm.VmFiles, stop: bool, say: Say) -> Iterator[None]:
    """The VM does not write while the block runs: paused (QMP stop), or powered down."""
    if stop:
        say(f"powering {files.dir.name} down (--stop)")
        with contextlib.suppress(OSError, ProviderError, ValueError):
            qmp(files.qmp, "system_powerdown")
        if wait_until(lambda: not files.alive(), 90, interval=1.0):
            yield
            return
        say("no clean power-down within 90 s: pausing it instead")
    qmp(files.qmp, "stop")
    say(f"paused {files.dir.name}")
    try:
        yield
    finally:
        if not stop:
            with contextlib.suppress(OSError, ProviderError, ValueError):
                qmp(files.qmp, "cont")
                say(f"resumed {files.dir.name}")


def boot_files(overlay: Path, cache: Path) -> tuple[Path, Path]:
    """The kernel and initrd beside the VM's base disk (the overlay's backing file)."""
    backing = info(overlay, "qcow2", shared=True).get("full-backing-filename") or ""
    base_dir = Path(backing).parent
    inside = cache.resolve() in base_dir.resolve().parents
    kernel, initrd = base_dir / "vmlinuz", base_dir / "initrd.img"
    if not backing or not inside or not kernel.is_file() or not initrd.is_file():
        raise ProviderError(f"{overlay}: its base image ({backing or 'none'}) is not a "
                            f"cached image with a kernel beside it")
    for path in (base_dir, kernel, initrd):
        imagecache.check_private(path)
    return kernel, initrd


def save(files: vm.VmFiles, name: str, cache: Path, *, source: str, stop: bool,
         say: Say) -> dict[str, Any]:
    """A running VM's disk (overlay + backing chain) as the standalone qemu image `name`."""
    if not files.alive():
        raise ProviderError(f"qemu instance {files.dir.name} is not running; only a running "
                            "instance can be saved")
    kernel, initrd = boot_files(files.overlay, cache)
    facts = info(files.overlay, "qcow2", shared=True)
    kind_dir = imagecache.kind_dir(cache, "qemu", create=True)
    imagecache.require_space(kind_dir, int(facts.get("virtual-size") or 0) // 2,
                             f"saving {files.dir.name}")
    started = time.monotonic()
    with imagecache.making(cache, "qemu", name, name) as work:
        raw = work / "disk.raw"  # sparse; edited, then packed as the image's qcow2
        with held_still(files, stop, say):
            convert(files.overlay, "qcow2", raw, say, shared=True, to="raw")
        keys = offline.forget_identity(raw, say)
        for line in loginkeys.report(keys):
            say(line)
        convert(raw, "raw", work / "disk.qcow2", say_nothing)
        raw.unlink()
        shutil.copy2(kernel, work / "vmlinuz")
        shutil.copy2(initrd, work / "initrd.img")
        record = _record(work, name, "qcow2", source, keys_removed=keys.files,
                         keys_not_expanded=keys.not_expanded)
    say(f"saved {files.dir.name} as qemu image {name} in {time.monotonic() - started:.0f} s")
    return {**imagecache.row(record, kind_dir / name), "keys_removed": keys.files,
            "keys_not_expanded": keys.not_expanded,
            "seconds": round(time.monotonic() - started, 1)}


def _record(work: Path, name: str, fmt: str, source: str, **more: Any) -> dict[str, Any]:
    size = sum((work / f).stat().st_size for f in ("disk.qcow2", "vmlinuz", "initrd.img"))
    record = {"name": name, "kind": "qemu", "format": fmt, "created": time.time(),
              "size": size, "source": source, **more}
    imagecache.write_meta(work, record)
    return record


def disk_format(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(4)
    if head == b"QFI\xfb":
        return "qcow2"
    if head.startswith((b"\x1f\x8b", b"\xfd7zX", b"BZh")):
        raise UsageError(f"{path}: a compressed file; qemu clouds take a raw or qcow2 disk "
                         "(root filesystem tarballs are for local clouds)")
    return "raw"


def _is_ext4(disk: Path) -> bool:
    with tempfile.TemporaryDirectory(prefix="cid-head-") as tmp:
        head = Path(tmp) / "head"
        proc = subprocess.run(["qemu-img", "dd", "-f", "qcow2", "-O", "raw", "bs=4096",
                               "count=1", f"if={disk}", f"of={head}"], capture_output=True)
        data = head.read_bytes() if proc.returncode == 0 and head.exists() else b""
    return data[EXT4_MAGIC_AT:EXT4_MAGIC_AT + 2] == b"\x53\xef"


def import_disk(path: Path, name: str, cache: Path, kernel: Path, initrd: Path,
                sent: Callable[[int], None], say: Say) -> dict[str, Any]:
    """Check and convert a raw/qcow2 file into the cache as qemu image `name`."""
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise UsageError(f"{path}: the image file is empty")
    fmt = disk_format(path)
    facts = info(path, fmt)
    if facts.get("backing-filename") or facts.get("full-backing-filename"):
        raise UsageError(f"{path}: a qcow2 with a backing file ({facts.get('backing-filename')}"
                         "); stage a standalone image (qemu-img convert -O qcow2)")
    data_file = ((facts.get("format-specific") or {}).get("data") or {}).get("data-file")
    if data_file:
        raise UsageError(f"{path}: a qcow2 with an external data file; refused")
    virtual = int(facts.get("virtual-size") or 0)
    if not 0 < virtual <= MAX_VIRTUAL:
        raise UsageError(f"{path}: virtual size {virtual} bytes; qemu images must be 1 byte "
                         f"to {MAX_VIRTUAL >> 30} GiB")
    kind_dir = imagecache.kind_dir(cache, "qemu", create=True)
    imagecache.require_space(kind_dir, min(size, virtual), f"staging {path.name}")
    started = time.monotonic()
    with imagecache.making(cache, "qemu", name, name) as work:
        convert(path, fmt, work / "disk.qcow2", say,
                sent=lambda percent: sent(int(size * percent / 100)))
        if not _is_ext4(work / "disk.qcow2"):
            raise UsageError(f"{path}: not a whole-disk ext4 file system (qemu clouds boot "
                             "root=/dev/vda with the built-in kernel; partitioned disks are "
                             "not supported)")
        shutil.copy2(kernel, work / "vmlinuz")
        shutil.copy2(initrd, work / "initrd.img")
        record = _record(work, name, fmt, f"staged {path.name} ({fmt})")
    return {**imagecache.row(record, kind_dir / name), "file_size": size,
            "virtual_size": virtual, "seconds": round(time.monotonic() - started, 1)}
