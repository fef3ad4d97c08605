"""Real OpenSSH servers for tests, one per 127.0.0.x address.

Each server has its own directory with a config, host key, pid file and
authorized_keys file holding the test client's public key, and listens on
its own loopback address and a free port. Servers are killed by the pid we
started (their whole process group, which holds the per-connection children
too) when the test ends, pass or fail.

Fixtures:
- `ssh_client_key`  (session) (private key path, public line) allowed on every host
- `sshd_hosts(n)`   start n servers now, return [Host] (`user=SUDO_USER`: log in as
                    a non-root user with password-less sudo, created if missing)
- `delayed_sshd(attempts)` a Host that turns away its first `attempts` connections,
                    then starts its server
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "ssh-keygen"
_addresses = itertools.count()
_addr_lock = threading.Lock()

CONFIG = """\
ListenAddress {address}:{port}
HostKey {dir}/ssh_host_ed25519_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
Subsystem sftp internal-sftp
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
# root's .bashrc runs pyenv (~100 ms per command); bash skips it with SHLVL set.
SetEnv SHLVL=1
MaxStartups 200:30:400
MaxSessions 50
LogLevel INFO
"""


def _require_sshd() -> None:
    if not os.path.exists(SSHD):
        pytest.fail(
            f"{SSHD} is missing: install the Debian package openssh-server "
            "(apt-get install -y openssh-server); these tests need real SSH servers",
            pytrace=False,
        )
    if shutil.which(SSH_KEYGEN) is None:
        pytest.fail("ssh-keygen is missing: install openssh-client", pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("the test sshd hosts need root (sshd privilege separation)", pytrace=False)
    # sshd refuses to start without its privilege-separation directory.
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)


SUDO_USER = "cidtest"


def ensure_sudo_user(name: str = SUDO_USER) -> None:
    """A non-root login user with password-less sudo, for the `sudo -n` path.

    Created once per machine and left in place (cheap, idempotent). Its
    password field is `*`, not useradd's `!`: with UsePAM no, sshd refuses
    accounts whose password is locked with `!`, even for key logins.
    """
    if shutil.which("sudo") is None:
        pytest.fail("sudo is missing: install the Debian package sudo", pytrace=False)
    if subprocess.run(["id", name], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True)
    subprocess.run(["usermod", "--password", "*", name], check=True)
    rule = Path(f"/etc/sudoers.d/{name}")
    text = f"{name} ALL=(ALL) NOPASSWD: ALL\n"
    if not rule.exists() or rule.read_text() != text:
        tmp = rule.with_name(f".{name}.tmp")
        tmp.write_text(text)
        tmp.chmod(0o440)
        subprocess.run(["visudo", "-cqf", str(tmp)], check=True)
        os.replace(tmp, rule)


def _keygen(path: Path, comment: str, key_type: str = "ed25519") -> None:
    for p in (path, path.with_name(path.name + ".pub")):
        p.unlink(missing_ok=True)
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", key_type, "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )


def _next_address() -> str:
    with _addr_lock:
        n = next(_addresses)
    high, low = divmod(n, 250)
    return f"127.0.{high % 250}.{low + 2}"  # 127.0.0.2, 127.0.0.3, ...


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


@dataclass
class Host:
    """One test sshd. `start()` / `stop()` / `restart(new_host_key=True)`."""

    address: str
    port: int
    user: str
    key_path: Path
    dir: Path
    noexec_tmp: bool = False  # run sshd in a mount namespace where /tmp is noexec
    proc: subprocess.Popen | None = None
    refused: int = 0  # connections turned away before sshd started (start_after_refusing)
    _doorman: socket.socket | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def host_public_key(self) -> str:
        return self.host_key.with_name(self.host_key.name + ".pub").read_text().strip()

    @property
    def log(self) -> Path:
        return self.dir / "sshd.log"

    def start(self, wait: bool = True) -> None:
        with self._lock:
            if self._stopped or (self.proc and self.proc.poll() is None):
                return
            argv = [SSHD, "-D", "-e", "-f", str(self.dir / "sshd_config")]
            if self.noexec_tmp:
                # A private mount namespace: only this sshd (and its sessions) see /tmp noexec.
                remount = "mount --bind /tmp /tmp && mount -o remount,bind,noexec /tmp"
                argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        f'{remount} && exec "$@"', "sh", *argv]  # fmt: skip
            log = open(self.log, "ab")  # noqa: SIM115 (the child keeps it)
            # Own process group: stop() kills the listener and its children by pgid.
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
            log.close()
        if wait:
            self.wait_listening()

    def wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"sshd on {self.address}:{self.port} exited {self.proc.returncode}: "
                    f"{self.log.read_text()[-2000:]}"
                )
            try:
                with socket.create_connection((self.address, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"sshd on {self.address}:{self.port} not listening after {timeout}s")

    def start_after_refusing(self, attempts: int) -> None:
        """Turn away the first `attempts` connections, then start sshd (a VM still booting).

        Until then a stand-in listener resets every connection (as a booting
        machine's network stack does), so the client has provably been turned
        away `attempts` times before sshd answers; no timer guesses how long
        the client takes to get there.
        """
        doorman = socket.socket()
        doorman.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        doorman.bind((self.address, self.port))
        doorman.listen(16)
        doorman.settimeout(0.2)
        self._doorman = doorman

        def serve() -> None:
            turned_away = 0
            try:
                while turned_away < attempts and not self._stopped:
                    try:
                        conn, _ = doorman.accept()
                    except TimeoutError:
                        continue
                    except OSError:
                        return  # closed by stop()
                    # Linger 0: close with a reset, like a port nobody serves yet.
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
                    conn.close()
                    turned_away += 1
                    self.refused = turned_away
            finally:
                doorman.close()
            if not self._stopped:
                self.start(wait=False)

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)  # pgid == pid: start_new_session
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue

    def restart(self, new_host_key: bool = False, key_type: str = "ed25519") -> None:
        """Restart; with `new_host_key` the server shows a fresh key (of `key_type`)."""
        self.stop()
        if new_host_key:
            _keygen(self.host_key, f"test-host-{self.address}", key_type)
        self.start()

    def close(self) -> None:
        """Final stop: no later timer or restart can bring it back."""
        with self._lock:
            self._stopped = True
        if self._doorman is not None:
            self._doorman.close()
        if self._thread is not None:
            self._thread.join(5)
        self.stop()


def _close_clients() -> None:
    """Close cloudinitd's cached client connections before the servers go.

    Then each per-connection sshd child exits normally and its listener reaps
    it; killed with the listener, the children would linger as zombies.
    """
    remote = sys.modules.get("cloudinitd.remote")
    if remote is not None:
        remote.close_all()


def _port_free_on(address: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


def _make_host(
    base: Path, pub_line: str, key_path: Path, noexec_tmp: bool = False, user: str = "root",
    port: int | None = None,
) -> Host:
    address = _next_address()
    port = port or _free_port(address)
    d = base / f"sshd-{address}-{port}"
    d.mkdir(parents=True)
    _keygen(d / "ssh_host_ed25519_key", f"test-host-{address}")
    (d / "authorized_keys").write_text(pub_line + "\n")
    config = CONFIG.format(address=address, port=port, dir=d)
    if user != "root":
        # sshd reads AuthorizedKeysFile as the user, who cannot enter pytest's
        # 0700 temp dirs; a root-run command hands it the same file instead.
        config += (
            f"AuthorizedKeysCommand /bin/cat {d}/authorized_keys\nAuthorizedKeysCommandUser root\n"
        )
    (d / "sshd_config").write_text(config)
    return Host(
        address=address, port=port, user=user, key_path=key_path, dir=d, noexec_tmp=noexec_tmp
    )


@pytest.fixture(scope="session")
def ssh_client_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    _require_sshd()
    d = tmp_path_factory.mktemp("ssh-client")
    key = d / "id_ed25519"
    _keygen(key, "cloudinitd-tests")
    return key, key.with_name("id_ed25519.pub").read_text().strip()


@pytest.fixture
def sshd_hosts(
    ssh_client_key: tuple[Path, str], tmp_path: Path
) -> Iterator[Callable[[int], list[Host]]]:
    """Factory: `sshd_hosts(n, noexec_tmp=False, user="root", same_port=False)` starts n servers.

    Every server accepts the test key for any user (one AuthorizedKeysFile);
    `user` only sets `Host.user`, creating the sudo test user if needed.
    `same_port`: all n listen on one port (the instances of one service share
    the plan's `ssh_port`).
    """
    started: list[Host] = []
    key, pub = ssh_client_key

    def make(n: int = 1, noexec_tmp: bool = False, user: str = "root",
             same_port: bool = False) -> list[Host]:
        if user != "root":
            ensure_sudo_user(user)
        hosts: list[Host] = []
        for _ in range(n):
            port = hosts[0].port if same_port and hosts else None
            host = _make_host(tmp_path, pub, key, noexec_tmp, user, port=port)
            if port is not None and not _port_free_on(host.address, port):
                raise RuntimeError(f"port {port} is already taken on {host.address}")
            hosts.append(host)
        started.extend(hosts)
        for h in hosts:
            h.start(wait=False)
        for h in hosts:
            h.wait_listening()
        return hosts

    try:
        yield make
    finally:
        _close_clients()
        for h in started:
            h.close()


@pytest.fixture
def delayed_sshd(
    ssh_client_key: tuple[Path, str], tmp_path: Path
) -> Iterator[Callable[[float], Host]]:
    """Factory: `delayed_sshd(2)` returns a Host whose sshd starts after 2 refused connections."""
    started: list[Host] = []
    key, pub = ssh_client_key

    def make(attempts: int = 2) -> Host:
        h = _make_host(tmp_path, pub, key)
        started.append(h)
        h.start_after_refusing(attempts)
        return h

    try:
        yield make
    finally:
        _close_clients()
        for h in started:
            h.close()
