"""SSH connections to instances: one Fabric Connection per (thread, target).

paramiko transports survive concurrent channels but an SFTP client does not,
and the engine drives instances from a ThreadPoolExecutor; so each thread
keeps its own connection per target (thread-local cache) and `close_all`
closes every connection any thread opened.

Connections never read ~/.ssh/config, ~/.ssh/known_hosts, an agent or the
user's default keys: a run's SSH behaviour depends only on the run (its key,
its known_hosts), never on the machine it happens to be driven from.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko
import paramiko.agent
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut

from cloudinitd.errors import RemoteError
from cloudinitd.remote import hostkeys, tcp
from cloudinitd.remote.hostkeys import (
    HostKeyChanged,
    TofuPolicy,
    bad_host_key_message,
    known_hosts_name,
)
from cloudinitd.remote.keyfile import private_key

# The first command on a connection: $HOME (the steps' folders are under it) and
# the host's own name, in one round trip.
PROBE = 'printf "%s\\n" "${HOME:-$(pwd)}"; hostname 2>/dev/null || uname -n 2>/dev/null || true'


# Output of a helper command (the probe, a cleanup): a few lines. More means the
# host (a login script, a flood) is not answering the command.
MAX_HELPER_OUTPUT = 1024 * 1024


class ProbeFailed(OSError):
    """The probe ran but did not answer as a POSIX shell does (retried like a refusal)."""


# Errors that mean "not reachable (yet)": worth retrying while a VM boots.
# AuthenticationException is among them because cloud-init often installs the
# key a moment after sshd starts answering.
TRANSIENT = (OSError, EOFError, paramiko.SSHException)


@dataclass(frozen=True)
class SshTarget:
    address: str
    port: int
    user: str
    key_path: Path
    known_hosts: Path
    label: str  # e.g. "compute-1", for messages
    forward_agent: bool = False  # only when a plan explicitly asks
    # Tells apart runs of the same name from different $CLOUDINITD_HOMEs on one
    # host: run names are unique per home only (see steps.remote_run_dir).
    scope: str = ""

    @property
    def key(self) -> tuple:
        return (self.address, self.port, self.user, str(self.key_path), str(self.known_hosts))

    @property
    def where(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"


def _fabric_config() -> Config:
    # lazy + an explicit empty SSHConfig: load no user/system fabric or ssh config files.
    return Config(lazy=True, ssh_config=paramiko.SSHConfig())


def _load_pins(client: paramiko.SSHClient, known: Path, name: str) -> None:
    """Give the client the keys pinned for this one host.

    Not `load_host_keys(file)`: that decodes every key in the run's
    known_hosts for every connection, which grows as hosts x hosts
    (~40 ms of CPU per connection at 500 hosts). The lines are matched as
    text and only this host's keys are decoded.
    """
    keys = client.get_host_keys()
    for keytype, blob in hostkeys._entries(known, name):
        entry = paramiko.hostkeys.HostKeyEntry.from_line(f"{name} {keytype} {blob}")
        if entry is not None and entry.key is not None:
            keys.add(name, entry.key.get_name(), entry.key)


class Session:
    """An open Fabric Connection to one target, with the few helpers steps need.

    Steps open their own channels on the connection's transport (one exec channel
    per step, see steps.py); `conn.run` (Invoke's runner) serves `exec`, where
    streaming output to the terminal is what it does best.
    """

    def __init__(self, target: SshTarget):
        self.target = target
        self._home: str | None = None
        self.hostname: str | None = None  # what `hostname` answered at the probe
        self.probed = False  # a command has run on this connection: the login works
        self.conn = Connection(
            host=target.address,
            user=target.user,
            port=target.port,
            config=_fabric_config(),
            forward_agent=target.forward_agent,
            connect_kwargs={  # "pkey": the key, read by `open` (paramiko never opens it)
                "look_for_keys": False,
                "allow_agent": False,
                "banner_timeout": 15,
                "auth_timeout": 15,
            },
        )
        # Fabric's own client trusts any host key (AutoAddPolicy) and loads
        # ~/.ssh/known_hosts; swap it for one that knows only this run's pins.
        client = paramiko.SSHClient()
        known = Path(target.known_hosts)
        _load_pins(client, known, known_hosts_name(target.address, target.port))
        client.set_missing_host_key_policy(TofuPolicy(known, target.label))
        self.conn.client = client

    @property
    def transport(self) -> paramiko.Transport:
        transport = self.conn.transport
        if transport is None:
            raise paramiko.SSHException("not connected")
        return transport

    def channel(self) -> paramiko.Channel:
        """A new session channel (with the agent forwarded when the target asks)."""
        chan = self.transport.open_session(timeout=15)
        if self.target.forward_agent:
            paramiko.agent.AgentRequestHandler(chan)
        return chan

    def open(self, service: str, connect_timeout: float = 10.0) -> None:
        """Connect; a changed host key becomes a RemoteError, other failures propagate."""
        name = known_hosts_name(self.target.address, self.target.port)
        # A key named by a plan is read here, checked on the opened file (the loader
        # checked its name, but the file may have changed or not existed then), and
        # handed to paramiko as a key: a name it opened could be a FIFO by then.
        # Not transient: waiting would not mend it.
        self.conn.connect_kwargs["pkey"] = private_key(self.target.key_path, service)
        self.conn.connect_timeout = max(1, int(round(connect_timeout)))
        try:
            # Our own socket: no Nagle from the first byte, acknowledgements at once
            # (remote/tcp.py). A new one per attempt; closing the session closes it.
            self.conn.connect_kwargs["sock"] = tcp.connect(
                self.target.address, self.target.port, self.conn.connect_timeout)
            self.conn.open()
        except HostKeyChanged as e:
            self.close()
            raise RemoteError(service, "ssh", str(e)) from None
        except paramiko.BadHostKeyException as e:
            self.close()
            raise RemoteError(
                service, "ssh", bad_host_key_message(name, self.target.label, e)
            ) from None
        except BaseException:
            self.close()
            raise
        # Keepalives notice a vanished VM instead of hanging on a dead socket.
        self.transport.set_keepalive(15)

    @property
    def alive(self) -> bool:
        t = self.conn.transport
        return t is not None and t.is_active()

    def close(self) -> None:
        # Closing a half-open connection must never mask the real error.
        with contextlib.suppress(Exception):
            self.conn.close()

    def run(self, command: str, timeout: float | None = 60) -> tuple[int, str]:
        """Run a short helper command; return (exit status, combined output).

        One channel, read here (not Invoke's runner, which starts three threads
        per command). Past `timeout` seconds: TimeoutError (a TRANSIENT error).
        """
        chan = self.channel()
        try:
            chan.set_combine_stderr(True)
            chan.settimeout(timeout)
            chan.exec_command(command)
            chan.shutdown_write()
            deadline = None if timeout is None else time.monotonic() + timeout
            out = bytearray()
            while True:
                data = chan.recv(65536)  # socket.timeout (a TimeoutError) past `timeout`
                if not data:
                    break
                out += data
                if len(out) > MAX_HELPER_OUTPUT:  # a helper's answer is a few lines
                    raise ProbeFailed(f"more than {MAX_HELPER_OUTPUT} bytes of output from"
                                      f" {command.split()[0][:40]!r}")
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"command still running after {timeout:g}s")
            if not chan.status_event.wait(timeout):
                raise TimeoutError(f"no exit status after {timeout:g}s")
            return chan.exit_status, out.decode(errors="replace")
        finally:
            chan.close()

    def probe(self) -> None:
        """One command that proves the login works and learns $HOME and the host's name."""
        status, out = self.run(PROBE, timeout=30)
        lines = out.splitlines()
        if status != 0 or not lines or not lines[0].startswith("/"):
            raise ProbeFailed(f"probe exited {status}: {out.strip()[-200:]}")
        self._home = lines[0]
        self.hostname = lines[1].strip() if len(lines) > 1 else None
        self.probed = True

    def sftp(self) -> paramiko.SFTPClient:
        return self.conn.sftp()  # Fabric opens it once per connection

    @property
    def home(self) -> str:
        """The SSH user's home directory (absolute), learned once per connection."""
        if self._home is None:
            self.probe()
        return self._home


# --- connection cache ------------------------------------------------------------

_local = threading.local()
_all_lock = threading.Lock()
_all: list[Session] = []
# Connections opened ahead of need (`prewarm`), owned by no thread until one
# adopts it in `session_for`: a session is only ever used by one thread.
_warm: dict[tuple, list[Session]] = {}


def _cache() -> dict[tuple, Session]:
    if not hasattr(_local, "sessions"):
        _local.sessions = {}
    return _local.sessions


def session_for(target: SshTarget, service: str, connect_timeout: float = 10.0) -> Session:
    """This thread's open session to `target`, connecting (once, no retries) if needed."""
    cache = _cache()
    sess = cache.get(target.key)
    if sess is not None and sess.alive:
        return sess
    if sess is not None:
        drop(sess)
    sess = _adopt(target)
    if sess is not None:
        cache[target.key] = sess
        return sess
    sess = Session(target)
    sess.open(service, connect_timeout)
    _remember(sess)
    return sess


def _adopt(target: SshTarget) -> Session | None:
    """Take a connection `prewarm` opened to `target`, if one is still alive."""
    with _all_lock:
        idle = _warm.get(target.key, [])
        while idle:
            sess = idle.pop()
            if sess.alive:
                return sess
    return None


def prewarm(target: SshTarget, service: str, connect_timeout: float = 10.0) -> bool:
    """Open a connection to `target` now, for whichever thread needs it first.

    A service waiting on its dependencies then finds its host already
    connected (key exchange and authentication done, host key pinned as a
    first connection would). Best effort: any failure is left to the real
    step, which connects, retries and reports as usual.
    """
    sess = Session(target)
    try:
        sess.open(service, connect_timeout)
        sess.probe()  # $HOME and hostname too: the step's wait_for_ssh then asks nothing
    except Exception:  # noqa: BLE001 (the step itself will meet and report it)
        sess.close()
        return False
    with _all_lock:
        _all.append(sess)
        _warm.setdefault(target.key, []).append(sess)
    return True


def _remember(sess: Session) -> None:
    _cache()[sess.target.key] = sess
    with _all_lock:
        _all.append(sess)


def drop(sess: Session) -> None:
    """Close one session and forget it (e.g. after an SSH error mid-step)."""
    sess.close()
    cache = _cache()
    if cache.get(sess.target.key) is sess:
        del cache[sess.target.key]
    with _all_lock:
        if sess in _all:
            _all.remove(sess)


def forget_session(target: SshTarget) -> None:
    """Close and forget this thread's session to `target`, if any."""
    sess = _cache().get(target.key)
    if sess is not None:
        drop(sess)


def forget_host(known_hosts: Path, address: str, port: int = 22) -> int:
    """An instance was replaced: close connections to it and drop its pinned key.

    Returns how many known_hosts lines were removed.
    """
    close_sessions(address, port)
    return hostkeys.forget_host(known_hosts, address, port)


def close_sessions(address: str | None = None, port: int | None = None) -> None:
    """Close cached sessions of every thread (all, or those to address[:port])."""
    with _all_lock:
        chosen = [
            s
            for s in _all
            if (address is None or s.target.address == address)
            and (port is None or s.target.port == port)
        ]
        for s in chosen:
            _all.remove(s)
        for idle in _warm.values():
            idle[:] = [s for s in idle if s not in chosen]
    for s in chosen:
        s.close()
    # Other threads' caches still hold the closed objects; `alive` is False
    # for them, so session_for reconnects on next use.


def close_all() -> None:
    close_sessions()


# --- waiting for a fresh machine ----------------------------------------------------


def describe(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    if isinstance(err, TimeoutError | CommandTimedOut):
        return f"timed out ({text})"
    return f"{type(err).__name__}: {text}"


def wait_for_ssh(target: SshTarget, timeout: float, service: str) -> None:
    """Retry connect + `true` until it works or `timeout` seconds pass.

    Fresh VMs refuse connections, reset them or reject the key for a while;
    backoff starts at 0.2 s and doubles up to 3 s. A changed host key is
    not retried: it is an error at once. The working connection is kept
    for the steps that follow.
    """
    start = time.monotonic()
    deadline = start + timeout
    delay = 0.2
    last: BaseException | None = None
    while True:
        remaining = deadline - time.monotonic()
        try:
            sess = session_for(target, service, connect_timeout=min(max(remaining, 1.0), 10.0))
            if sess.probed:  # this connection already ran a command: nothing to wait for
                return
            try:
                sess.probe()
                return
            except ProbeFailed as e:
                last = e
                drop(sess)
        except RemoteError:
            raise
        except (*TRANSIENT, CommandTimedOut) as e:
            last = e
            forget_session(target)
        if time.monotonic() + delay > deadline:
            waited = time.monotonic() - start
            raise RemoteError(
                service,
                "ssh",
                f"no SSH on {target.address}:{target.port} ({target.label}) after {waited:.0f}s: "
                f"{describe(last) if last else 'no attempt finished'}",
            )
        time.sleep(delay)
        delay = min(delay * 2, 3.0)
