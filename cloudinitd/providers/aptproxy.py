"""The apt proxy on our bridge: apt-cacher-ng bound to the gateway address.

Instances have no route out (no NAT, no forwarding), so their apt goes
through this proxy, which forwards only to the Debian archive the machine
itself uses (`ForceManaged`). What an instance can do to it is limited:
- it runs as the unprivileged `apt-cacher-ng` user (started through
  `setpriv`), owning only its cache, log and pid folders;
- its maintenance page (`acng-report.html`, which can trigger expiry and
  deletion jobs) is switched off (`ReportPage:` empty), and the admin
  socket lives in a folder only that user can enter.

Its configuration is written by root into a per-bridge folder under
`/run/cloudinitd-acng/` that the proxy user can read (a test's private lease
folder under /tmp may not be traversable for it).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from cloudinitd.errors import ProviderError
from cloudinitd.host import ports, procs
from cloudinitd.host.waiting import wait_until
from cloudinitd.settings import settings

if TYPE_CHECKING:  # hostnet imports this module (it re-exports the proxy's names)
    from cloudinitd.providers.hostnet import Bridge

APT_PROXY_PORT = 3142
DEFAULT_MIRROR = "http://deb.debian.org/debian/"
PROXY_USER = "apt-cacher-ng"
RUN_ROOT = Path("/run/cloudinitd-acng")


def host_debian_mirror() -> str:
    """The Debian mirror the machine's own apt uses (sources.list / deb822), with a trailing /."""
    override = settings().debian_mirror
    if override:
        return override.rstrip("/") + "/"
    files = [Path("/etc/apt/sources.list")]
    files += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    files += sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        uris = re.findall(r"^\s*URIs:\s*(\S+)", text, re.M)
        uris += re.findall(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", text, re.M)
        for uri in uris:
            # the main archive, not security / third-party repositories
            if uri.startswith("http://") and re.search(r"/debian/?$", uri):
                return uri.rstrip("/") + "/"
    return DEFAULT_MIRROR


def conf_dir() -> Path:
    """This bridge's proxy folder: config (root's), log/ and run/ (the proxy user's)."""
    from cloudinitd.providers.hostnet import bridge_config

    return RUN_ROOT / bridge_config().name


def apt_cache_dir() -> Path:
    return Path(settings().apt_cache or "/var/cache/cloudinitd/apt-cacher-ng")


def _pid_file(conf: Path) -> Path:
    return conf / "run" / "apt-cacher-ng.pid"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _proxy(conf: Path) -> procs.Proc | None:
    """The running apt-cacher-ng its pid file names (not a process that reused the pid)."""
    return procs.find(_read_pid(_pid_file(conf)), "apt-cacher-ng")


def _acng_config(bridge: Bridge, conf: Path) -> str:
    return "\n".join(
        [
            "# written by cloudinitd: apt proxy for instances on our bridge only",
            f"CacheDir: {apt_cache_dir()}",
            f"LogDir: {conf / 'log'}",
            "SupportDir: /usr/lib/apt-cacher-ng",
            f"Port: {APT_PROXY_PORT}",
            f"BindAddress: {bridge.gateway}",
            f"PidFile: {_pid_file(conf)}",
            f"SocketPath: {conf / 'run' / 'socket'}",
            "ForeGround: 0",
            # backends_debian (next to this file) names the machine's own mirror:
            # the package default remapping answers "503 Host not found" here.
            "Remap-debrep: file:deb_mirror*.gz /debian ; file:backends_debian",
            # Only the Debian archive above: instances must not use the proxy
            # to reach any other host.
            "ForceManaged: 1",
            # No CONNECT tunnels either (the built-in default lets two hosts through).
            "PassThroughPattern: ^$",
            # No maintenance page: any instance could otherwise start expiry
            # and deletion jobs on the shared cache.
            "ReportPage:",
            "ExThreshold: 4",
            "",
        ]
    )


def _proxy_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PROXY_USER)
    except KeyError:
        raise ProviderError(
            f"no user {PROXY_USER!r}: apt-get install apt-cacher-ng (its package makes it)"
        ) from None


def _owned_dir(path: Path, user: pwd.struct_passwd, mode: int) -> None:
    """A folder the proxy user owns; an existing tree made by root is handed over once."""
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_uid != user.pw_uid:
        for root, dirs, files in os.walk(path):
            for name in [*dirs, *files]:
                os.lchown(os.path.join(root, name), user.pw_uid, user.pw_gid)
        os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(mode)


def _reachable_by(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether every folder above `path` lets `user` (not root) through."""
    for parent in path.resolve().parents:
        st = parent.stat()
        if st.st_uid == user.pw_uid:
            bit = 0o100
        elif st.st_gid == user.pw_gid:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return False
    return True


def _prepare(bridge: Bridge, conf: Path, user: pwd.struct_passwd) -> None:
    RUN_ROOT.mkdir(mode=0o755, exist_ok=True)
    conf.mkdir(mode=0o755, exist_ok=True)
    conf.chmod(0o755)
    _owned_dir(conf / "log", user, 0o750)
    _owned_dir(conf / "run", user, 0o700)
    cache = apt_cache_dir()
    cache.parent.mkdir(parents=True, exist_ok=True)
    if not _reachable_by(cache, user) or not _reachable_by(conf / "acng.conf", user):
        raise ProviderError(
            f"apt proxy: {cache} or {conf} lies in a folder user {PROXY_USER} cannot enter: "
            "set CLOUDINITD_APT_CACHE to a folder under a world-traversable parent"
        )
    _owned_dir(cache, user, 0o750)
    for name, text in (
        ("acng.conf", _acng_config(bridge, conf)),
        ("backends_debian", host_debian_mirror() + "\n"),
    ):
        (conf / name).write_text(text)
        (conf / name).chmod(0o644)


def ensure_apt_proxy(bridge: Bridge) -> str:
    """Start (once) apt-cacher-ng on the gateway address, as its own user; return its URL."""
    url = f"http://{bridge.gateway}:{APT_PROXY_PORT}"
    binary = shutil.which("apt-cacher-ng") or "/usr/sbin/apt-cacher-ng"
    if not Path(binary).exists():
        raise ProviderError("apt-cacher-ng not found: apt-get install apt-cacher-ng")
    user = _proxy_user()
    conf = RUN_ROOT / bridge.name
    from cloudinitd.providers.hostnet import locked

    with locked():
        if _answering(conf, bridge):
            return url
        _prepare(bridge, conf, user)
        _stop_legacy()
        old = _proxy(conf)
        if old:  # alive but not answering on our address: restart it
            _stop(old)
        drop = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"]
        proc = subprocess.run(
            [*drop, "--", binary, "-c", str(conf)], capture_output=True, text=True, timeout=30
        )
        if wait_until(lambda: _answering(conf, bridge), 15, interval=0.1):
            return url
        log_tail = ""
        with contextlib.suppress(OSError):
            log_tail = (conf / "log" / "apt-cacher.err").read_text()[-500:]
        raise ProviderError(
            f"apt-cacher-ng did not start on {bridge.gateway}:{APT_PROXY_PORT} "
            f"(exit {proc.returncode}): {(proc.stderr or log_tail).strip()[-500:]}"
        )


def _answering(conf: Path, bridge: Bridge) -> bool:
    return bool(_proxy(conf)) and ports.port_open(bridge.gateway, APT_PROXY_PORT)


def _stop(proxy: procs.Proc, timeout: float = 10.0) -> None:
    procs.stop(proxy, grace=timeout, kill_wait=0)


def _stop_legacy() -> None:
    """A proxy an older cloudinitd started as root (pid file in the lease folder) holds
    our port: stop it, so the unprivileged one can take over."""
    from cloudinitd.providers.hostnet import net_dir

    legacy = net_dir() / "apt-cacher-ng"
    proxy = procs.find(_read_pid(legacy / "apt-cacher-ng.pid"), "apt-cacher-ng")
    if proxy:
        _stop(proxy)
    shutil.rmtree(legacy, ignore_errors=True)


def apt_proxy_pid() -> int | None:
    """Pid of the apt-cacher-ng we started for this bridge, if it is running."""
    proxy = _proxy(conf_dir())
    return proxy.pid if proxy else None


def stop_apt_proxy() -> None:
    """Stop this bridge's proxy (by its pid file) and drop its folder; keep the cache.

    Callers hold `hostnet.locked()`.
    """
    conf = conf_dir()
    proxy = _proxy(conf)
    if proxy:
        _stop(proxy)
    shutil.rmtree(conf, ignore_errors=True)
