"""Thin wrappers around the lxc-* commands, always with an explicit lxcpath.

Containers of cloudinitd live in their own lxcpath (never /var/lib/lxc), so
nothing here can touch containers the user made by hand.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from cloudinitd.errors import ProviderError
from cloudinitd.providers.local import disk, rootfs
from cloudinitd.textsafe import for_terminal

INSTALL_HINT = "apt-get install lxc"

# In the container directory: LXC's own log (INFO keeps the line saying how
# init ended) and the guest's console, where systemd says why it gave up.
LOG = "lxc.log"
CONSOLE_LOG = "console.log"
_START_MARK = "lxc_init:"  # "Container ... is initialized": one per start attempt
_GENERIC = ("lxc_start.c:main", "wait_on_daemonized_start", "__lxc_start", "sync_wait")
_LXC_PREFIX = re.compile(r"^lxc-\S+ \S+ \d+\.\d+ +")


def available() -> str:
    """The LXC version, or ProviderError naming the package to install."""
    if not shutil.which("lxc-start"):
        raise ProviderError(f"LXC is not installed (lxc-start not found): {INSTALL_HINT}")
    proc = subprocess.run(["lxc-start", "--version"], capture_output=True, text=True)
    return proc.stdout.strip() or "unknown"


def _lxc(
    cmd: str, name: str, lxcpath: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            [cmd, "-n", name, "-P", str(lxcpath), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except FileNotFoundError:
        raise ProviderError(f"{cmd} not found: {INSTALL_HINT}") from None
    except subprocess.TimeoutExpired:
        raise ProviderError(f"{cmd} {name} did not finish within {timeout:.0f} s") from None


def start(name: str, lxcpath: Path) -> None:
    log = lxcpath / name / LOG
    proc = _lxc("lxc-start", name, lxcpath, "-d", "-o", str(log), "-l", "INFO")
    if proc.returncode != 0:
        tail = log_tail(name, lxcpath)
        raise ProviderError(f"lxc-start {name} failed: {proc.stderr.strip()} {tail}".strip())


def _tail_lines(path: Path, limit: int = 256 << 10) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - limit))
            text = fh.read().decode(errors="replace")
    except OSError:
        return []
    # The console is the guest's: nothing in it may reach the terminal as a command.
    return [ln.strip() for ln in for_terminal(text).splitlines() if ln.strip()]


def console_lines(name: str, lxcpath: Path) -> list[str]:
    """The end of the container's console log, escape sequences and control characters removed."""
    return _tail_lines(lxcpath / name / CONSOLE_LOG)


def log_tail(name: str, lxcpath: Path, lines: int = 8) -> str:
    """Why a container stopped, in one line: its console's last lines and LXC's verdict."""
    directory = lxcpath / name
    console = console_lines(name, lxcpath)[-lines:]
    lxc_lines = _tail_lines(directory / LOG)
    # The first errors of the last start say why; the later ones only repeat
    # that the start failed.
    starts = [i for i, ln in enumerate(lxc_lines) if _START_MARK in ln]
    last = lxc_lines[starts[-1] :] if starts else lxc_lines
    errors = [ln for ln in last if " ERROR " in ln and not any(g in ln for g in _GENERIC)]
    ended = [ln for ln in last if "ended on " in ln or "exited with status" in ln]
    verdict = (errors[:3] + ended[-1:]) or lxc_lines[-2:]
    parts = []
    if console:
        parts.append("console: " + " | ".join(console))
    if verdict:
        parts.append("lxc: " + " | ".join(_LXC_PREFIX.sub("", ln) for ln in verdict))
    return "; ".join(parts)


def state(name: str, lxcpath: Path) -> str | None:
    """RUNNING, STOPPED, STARTING, STOPPING, ...; None when the container does not exist."""
    if not (lxcpath / name / "config").exists():
        return None
    proc = _lxc("lxc-info", name, lxcpath, "-s", "-H", timeout=30)
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def init_pid(name: str, lxcpath: Path) -> int | None:
    proc = _lxc("lxc-info", name, lxcpath, "-p", "-H", timeout=30)
    out = proc.stdout.strip()
    return int(out) if proc.returncode == 0 and out.isdigit() else None


def stop(name: str, lxcpath: Path, kill: bool = True) -> None:
    """Stop the container; `kill` skips the guest's shutdown (as a cloud terminate does)."""
    if state(name, lxcpath) in (None, "STOPPED"):
        return
    args = ["-k"] if kill else ["-t", "30"]
    proc = _lxc("lxc-stop", name, lxcpath, *args)
    if proc.returncode != 0 and state(name, lxcpath) not in (None, "STOPPED"):
        raise ProviderError(f"lxc-stop {name} failed: {proc.stderr.strip()}")


def destroy(name: str, lxcpath: Path) -> None:
    """Stop and delete the container and its disk (the overlay's upper layer and its filesystem)."""
    directory = lxcpath / name
    if not directory.exists():
        return
    stop(name, lxcpath)
    # Before lxc-destroy, which would empty a still-mounted rootfs (harmless
    # to the base image, but slow) and before rmtree, which would descend into it.
    # The overlay first, then the disk under it (its loop device goes with it).
    rootfs.unmount(directory)
    disk.unmount(directory)
    if (directory / "config").exists():
        proc = _lxc("lxc-destroy", name, lxcpath)
        if proc.returncode != 0 and state(name, lxcpath) == "RUNNING":
            raise ProviderError(f"lxc-destroy {name} failed: {proc.stderr.strip()}")
    # lxc-destroy leaves our sidecar and logs; a half-made container has no config.
    shutil.rmtree(directory, ignore_errors=True)
    if directory.exists():
        raise ProviderError(f"could not remove {directory}")


def attach(
    name: str, lxcpath: Path, command: list[str], input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run a command inside the container (clear environment)."""
    try:
        return subprocess.run(
            ["lxc-attach", "-n", name, "-P", str(lxcpath), "--clear-env", "--", *command],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except FileNotFoundError:
        raise ProviderError(f"lxc-attach not found: {INSTALL_HINT}") from None


def states(lxcpath: Path) -> dict[str, tuple[str, int | None]]:
    """name -> (STATE, init pid or None) for every container under lxcpath, in one call."""
    if not lxcpath.is_dir():
        return {}
    try:
        proc = subprocess.run(
            ["lxc-ls", "-P", str(lxcpath), "-f", "-F", "NAME,STATE,PID"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except FileNotFoundError:
        raise ProviderError(f"lxc-ls not found: {INSTALL_HINT}") from None
    out: dict[str, tuple[str, int | None]] = {}
    for line in proc.stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2:
            pid = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
            out[parts[0]] = (parts[1], pid)
    return out
