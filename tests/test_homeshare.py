"""The run-scoped home share: a real sftp-only OpenSSH server on a loopback address."""

from __future__ import annotations

import io
import os
import pwd
import secrets
import shutil
import socket
import stat
import tempfile
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloudinitd.homeshare import (
    HomeShareError,
    default_home_dir,
    ensure_home_share,
    share_pid,
    stop_home_share,
)
from tests.support.share import share_client


@pytest.fixture
def address() -> str:
    """A loopback address of its own, so shares of parallel tests never meet."""
    return f"127.0.{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 2}"


@pytest.fixture
def run_dir(tmp_path: Path):
    d = tmp_path / "runs" / "sshfs-vm-1"
    d.mkdir(parents=True)
    yield d
    stop_home_share(d)  # also when the test failed half way


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    (h / "docs").mkdir(parents=True)
    (h / "hello.txt").write_text("hello from home\n")
    return h


_connect = share_client


def _descendants(pid: int) -> set[int]:
    out, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == parent and int(entry.name) not in out:
                out.add(int(entry.name))
                todo.append(int(entry.name))
    return out


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sftp_with_the_run_key_sees_and_writes_the_home(run_dir, home, address):
    share = ensure_home_share(run_dir, address, str(home), "root")
    assert (share.host, share.user, share.dir) == (address, "root", str(home))
    assert share.known_host.startswith(f"[{address}]:{share.port} ssh-ed25519 ")
    client = _connect(share)  # RejectPolicy: the pinned host key must match
    try:
        sftp = client.open_sftp()
        assert sftp.normalize(".") == str(home)  # relative paths start in the home
        assert sorted(sftp.listdir(str(home))) == ["docs", "hello.txt"]
        with sftp.open("hello.txt") as f:
            assert f.read() == b"hello from home\n"
        with sftp.open("docs/from-vm.txt", "w") as f:
            f.write(b"written over sftp\n")
    finally:
        client.close()
    assert (home / "docs" / "from-vm.txt").read_text() == "written over sftp\n"


def test_a_shell_command_is_refused(run_dir, home, address, tmp_path):
    share = ensure_home_share(run_dir, address, str(home), "root")
    marker = tmp_path / "should-not-exist"
    client = _connect(share)
    try:
        stdin, stdout, stderr = client.exec_command(f"echo pwned-marker; touch {marker}")
        stdin.close()
        out = stdout.read() + stderr.read()
        status = stdout.channel.recv_exit_status()
        with pytest.raises(paramiko.SSHException):
            client.invoke_shell()  # no tty either
    finally:
        client.close()
    assert b"pwned-marker" not in out
    assert b"sftp connections only" in out
    assert status != 0
    assert not marker.exists()


def test_another_key_or_a_password_is_refused(run_dir, home, address):
    share = ensure_home_share(run_dir, address, str(home), "root")
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    stranger = paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode()))
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    with pytest.raises(paramiko.AuthenticationException):
        client.connect(
            share.host,
            port=share.port,
            username="root",
            pkey=stranger,
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
    client.close()
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    with pytest.raises(paramiko.AuthenticationException):
        client.connect(
            share.host,
            port=share.port,
            username="root",
            password="root",
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
    client.close()


def test_files_are_private_and_the_key_never_shows_in_repr(run_dir, home, address):
    share = ensure_home_share(run_dir, address, str(home), "root")
    d = run_dir / "homeshare"
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for name in ("home_key", "ssh_host_ed25519_key", "sshd_config", "share.json"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600, name
    assert share.key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert "PRIVATE KEY" not in repr(share) and share.key not in repr(share)
    assert "PRIVATE" not in (d / "share.json").read_text()
    authorized = (d / "authorized_keys").read_text().splitlines()
    assert len(authorized) == 1 and authorized[0].startswith("restrict ssh-ed25519 ")


def test_ensure_is_idempotent_and_restarts_on_change(run_dir, home, address, tmp_path):
    first = ensure_home_share(run_dir, address, str(home), "root")
    pid = share_pid(run_dir)
    again = ensure_home_share(run_dir, address, str(home), "root")
    assert share_pid(run_dir) == pid and again == first  # same port, keys, process
    other = tmp_path / "other-home"
    other.mkdir()
    moved = ensure_home_share(run_dir, address, str(other), "root")
    assert share_pid(run_dir) not in (None, pid) and not _running(pid)
    assert moved.port == first.port and moved.key == first.key
    assert moved.known_host == first.known_host  # the host key survives a restart
    client = _connect(moved)
    try:
        assert client.open_sftp().normalize(".") == str(other)
    finally:
        client.close()


def test_a_busy_port_makes_the_share_pick_another(run_dir, home, address):
    with socket.socket() as squatter:
        squatter.bind((address, 2222))
        squatter.listen()
        share = ensure_home_share(run_dir, address, str(home), "root")
    assert share.port != 2222
    _connect(share).close()


def test_stop_leaves_no_process_even_with_a_connection_open(run_dir, home, address):
    share = ensure_home_share(run_dir, address, str(home), "root")
    pid = share_pid(run_dir)
    client = _connect(share)
    sftp = client.open_sftp()
    assert sftp.listdir(".")
    family = {pid} | _descendants(pid)
    assert len(family) >= 2  # the listener and the connection's sshd
    try:
        assert stop_home_share(run_dir) is True
    finally:
        client.close()
    assert [p for p in family if _running(p)] == []
    assert share_pid(run_dir) is None
    assert stop_home_share(run_dir) is False  # nothing left to stop
    with pytest.raises(OSError), socket.create_connection((address, share.port), timeout=2):
        pass


def test_a_non_root_user_gets_the_share_too(run_dir, tmp_path, address):
    """sshd reads a non-root user's keys as that user: root's 0700 folders must not matter."""
    user = pwd.getpwnam("nobody")
    # pytest's own folders are 0700: the user needs a path it can walk.
    public = Path(tempfile.mkdtemp(prefix="cloudinitd-homeshare-"))
    public.chmod(0o755)
    (public / "readme").write_text("shared\n")
    share = ensure_home_share(run_dir, address, str(public), "nobody")
    client = _connect(share)
    try:
        sftp = client.open_sftp()
        assert "readme" in sftp.listdir(str(public))
        # Outside the chroot: not even there (before the jail: PermissionError at best).
        with pytest.raises(FileNotFoundError):
            sftp.open(str(run_dir / "homeshare" / "home_key")).read()
    finally:
        client.close()
        shutil.rmtree(public)
    assert user.pw_uid != 0


def test_bad_inputs_are_clear_errors(run_dir, home, tmp_path):
    with pytest.raises(HomeShareError, match="is not a folder"):
        ensure_home_share(run_dir, "127.0.0.9", str(tmp_path / "missing"), "root")
    with pytest.raises(HomeShareError, match="no user"):
        ensure_home_share(run_dir, "127.0.0.9", str(home), "no-such-user-here")
    # TEST-NET-1 belongs to nobody and is on no interface: binding fails, nothing is sent.
    with pytest.raises(HomeShareError, match="cannot listen on 192.0.2.1"):
        ensure_home_share(run_dir, "192.0.2.1", str(home), "root")
    assert share_pid(run_dir) is None


def test_default_home_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("SUDO_USER", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    me = pwd.getpwuid(os.getuid()).pw_name
    assert default_home_dir() == (str(tmp_path), me)
    if os.geteuid() == 0:
        monkeypatch.setenv("SUDO_USER", "nobody")
        assert default_home_dir() == (pwd.getpwnam("nobody").pw_dir, "nobody")
