"""The home share reaches the shared folder and nothing else of this machine (issue 16).

Two halves: a real share on a loopback address attacked with the run's key
(no container: quick, and it also covers a non-root shared user), and an
end-to-end `launch-vm` whose VM attacks the share with `sftp` from inside
(@lxc). Every write attempt aims at a real host file and asserts it FAILED
and the file is unchanged by content hash; files that must not appear are
checked not to.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import secrets
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from cloudinitd.homeshare import ensure_home_share, share_pid, stop_home_share
from cloudinitd.homeshare_jail import jail_dir
from tests.support.share import share_client

# Host files an attacker in a VM wants. Every write carries MARKER.
TARGETS = ("/etc/shadow", "/etc/passwd", "/root/.ssh/authorized_keys")
CRON_FILE = "/etc/cron.d/cloudinitd-share-test"
MARKER = f"cloudinitd-share-attack-{secrets.token_hex(8)}"
# Other work on this machine may add users (passwd, shadow) meanwhile: those
# two are checked for the marker; the others must not change at all.
HASHED = ("/root/.ssh/authorized_keys", CRON_FILE)


def digests() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for path in HASHED:
        try:
            out[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except FileNotFoundError:
            out[path] = None
    return out


@pytest.fixture
def host_files() -> Iterator[dict[str, str | None]]:
    """The host's sensitive files: unchanged by content hash, or free of the marker."""
    before = digests()
    assert before[CRON_FILE] is None  # the file we try to plant does not exist
    yield before
    after = digests()
    if after[CRON_FILE] is not None:  # an attack worked: do not leave it behind
        os.unlink(CRON_FILE)
    assert after == before
    for path in TARGETS:
        with contextlib.suppress(FileNotFoundError):
            assert MARKER.encode() not in Path(path).read_bytes(), path


@pytest.fixture
def address() -> str:
    return f"127.0.{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 2}"


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "runs" / "sshfs-vm-1"
    d.mkdir(parents=True)
    yield d
    stop_home_share(d)


def make_share_dir(owner: str = "root") -> Path:
    """A shared folder with a file and a symlink planted to /etc (as a VM could make)."""
    base = Path(tempfile.mkdtemp(prefix="cloudinitd-share-"))
    base.chmod(0o755)
    shared = base / "shared"
    shared.mkdir()
    (base / "sibling-secret.txt").write_text("next to the share, not in it\n")
    (shared / "hello.txt").write_text("hello from the share\n")
    (shared / "etc-link").symlink_to("/etc")
    (shared / "up-link").symlink_to("../../../../../../etc")
    pw = pwd.getpwnam(owner)
    for path in (shared, shared / "hello.txt"):
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return shared


@pytest.fixture
def shared() -> Iterator[Path]:
    d = make_share_dir()
    yield d
    shutil.rmtree(d.parent)


connect = share_client


def refused(action) -> bool:
    """True when the sftp request failed (no such file, permission denied, ...)."""
    try:
        action()
    except OSError:
        return True
    return False


def attack(sftp: paramiko.SFTPClient, shared: Path) -> None:
    """Every escape a VM could try; each must fail."""
    inside = str(shared)
    for target in TARGETS:
        assert refused(lambda t=target: sftp.open(t).read()), f"read {target}"
        assert refused(lambda t=target: sftp.open(t, "a").write(MARKER.encode())), target
    assert refused(lambda: sftp.open(CRON_FILE, "w").write(f"# {MARKER}\n".encode()))
    assert refused(lambda: sftp.open(f"{inside}/../../../../../etc/shadow").read())
    assert refused(lambda: sftp.open("../../../../../../etc/passwd").read())  # relative
    assert refused(lambda: sftp.open(f"{inside}/etc-link/passwd").read())
    assert refused(lambda: sftp.open(f"{inside}/up-link/passwd").read())
    assert refused(lambda: sftp.listdir("/etc"))
    assert refused(lambda: sftp.open(f"{inside}/../sibling-secret.txt").read())
    assert sftp.listdir(f"{inside}/..") == ["shared"]  # the parent: empty but for the share
    # The jail around the share is read-only, even for a session running as root.
    assert refused(lambda: sftp.mkdir("/made-at-the-top"))
    assert refused(lambda: sftp.open(f"{inside}/../made-next-to-it", "w").write(b"x"))
    # A symlink the VM plants itself, then follows.
    sftp.symlink("/etc", f"{inside}/vm-link")
    assert refused(lambda: sftp.open(f"{inside}/vm-link/shadow").read())
    assert refused(lambda: sftp.rename(f"{inside}/hello.txt", "/etc/cron.d/moved"))
    # What the VM sees at the top: the path down to the share and nothing else.
    top = sftp.listdir("/")
    assert top == [inside.split("/")[1]], top


def test_a_root_share_reaches_only_the_shared_folder(run_dir, shared, address, host_files):
    share = ensure_home_share(run_dir, address, str(shared), "root")
    client = connect(share)
    try:
        sftp = client.open_sftp()
        attack(sftp, shared)
        # Files still cross both ways inside the share, with root's ownership.
        assert sftp.open("hello.txt").read() == b"hello from the share\n"
        with sftp.open(f"{shared}/from-vm.txt", "w") as f:
            f.write(b"written by the vm\n")
    finally:
        client.close()
    written = shared / "from-vm.txt"
    assert written.read_text() == "written by the vm\n"
    assert written.stat().st_uid == 0
    assert (shared / "vm-link").is_symlink()  # planted inside the share, harmless there
    assert share.confined


def test_a_non_root_shared_user_is_confined_and_owns_what_it_writes(
    run_dir, address, host_files
):
    """The sudo case: root starts the share, the session runs as the user (here nobody)."""
    user = pwd.getpwnam("nobody")
    shared = make_share_dir(owner="nobody")
    try:
        share = ensure_home_share(run_dir, address, str(shared), "nobody")
        client = connect(share)
        try:
            sftp = client.open_sftp()
            # /etc/passwd is world-readable: only the chroot keeps it out of reach.
            attack(sftp, shared)
            with sftp.open("from-vm.txt", "w") as f:
                f.write(b"as nobody\n")
            assert refused(lambda: sftp.open("/made-at-the-top", "w").write(b"x"))
        finally:
            client.close()
        written = shared / "from-vm.txt"
        assert written.read_text() == "as nobody\n"
        assert (written.stat().st_uid, written.stat().st_gid) == (user.pw_uid, user.pw_gid)
        # The session really ran as nobody: the sshd serving it dropped to uid 65534.
    finally:
        stop_home_share(run_dir)
        shutil.rmtree(shared.parent)


def test_read_only_refuses_every_write(run_dir, shared, address, host_files):
    before = {p.name: p.read_bytes() for p in shared.iterdir() if p.is_file()}
    share = ensure_home_share(run_dir, address, str(shared), "root", read_only=True)
    assert share.read_only
    client = connect(share)
    try:
        sftp = client.open_sftp()
        assert sftp.open("hello.txt").read() == b"hello from the share\n"
        assert refused(lambda: sftp.open("new.txt", "w").write(b"x"))
        assert refused(lambda: sftp.open("hello.txt", "a").write(b"x"))
        assert refused(lambda: sftp.remove("hello.txt"))
        assert refused(lambda: sftp.mkdir("newdir"))
        assert refused(lambda: sftp.chmod("hello.txt", 0o777))
        assert refused(lambda: sftp.rename("hello.txt", "renamed.txt"))
        assert refused(lambda: sftp.symlink("/etc", "ro-link"))
    finally:
        client.close()
    assert {p.name: p.read_bytes() for p in shared.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in shared.iterdir()) == ["etc-link", "hello.txt", "up-link"]
    assert stat.S_IMODE((shared / "hello.txt").stat().st_mode) == 0o644


def test_the_jail_leaves_nothing_on_this_machine(run_dir, shared, address):
    """The mounts live in the share's namespace only; stop removes the empty mount point."""
    ensure_home_share(run_dir, address, str(shared), "root")
    jail = jail_dir(run_dir)
    assert jail.is_dir() and list(jail.iterdir()) == []  # empty here: mounts are private
    st = jail.stat()
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o755
    pid = share_pid(run_dir)
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    with open("/proc/self/mountinfo") as f:
        assert str(jail) not in f.read()
    assert stop_home_share(run_dir)
    assert not jail.exists()


def test_sharing_the_root_folder_is_refused(run_dir, address):
    from cloudinitd.homeshare import HomeShareError

    with pytest.raises(HomeShareError, match="refusing to share /"):
        ensure_home_share(run_dir, address, "/", "root")
    assert share_pid(run_dir) is None


# --- end to end: a launch-vm VM attacks the share from inside ---------------------------


def vm_run(ssh_command: str, remote: str) -> subprocess.CompletedProcess:
    argv = shlex.split(ssh_command)
    argv[1:1] = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    return subprocess.run([*argv, remote], capture_output=True, text=True, timeout=120)


def vm_sftp(ssh_command: str, host: str, port: int, batch: str) -> subprocess.CompletedProcess:
    """`sftp` on the VM with the share's key, one batch (it stops at the first failure)."""
    remote = (
        f"printf '%s\\n' {shlex.quote(batch)} | sftp -b - -P {port}"
        " -i /root/.ssh/cloudinitd-home-key -o IdentitiesOnly=yes"
        " -o UserKnownHostsFile=/root/.ssh/cloudinitd-home-known_hosts"
        f" -o StrictHostKeyChecking=yes root@{host}"
    )
    return vm_run(ssh_command, remote)


@contextlib.contextmanager
def launch(local_net, root: Path, *args: str) -> Iterator[tuple[Any, str, str, str]]:
    """`launch-vm ARGS` as root; yields (cli, printed ssh command, run name, output)."""
    from tests.support.cli import Cli
    from tests.support.lxc import destroy_all, new_provider

    cli = Cli(root / "cloudinitd-home", env={"HOME": str(root / "home")})
    (root / "home").mkdir(exist_ok=True)
    try:
        out = cli(*args, program="launch-vm", timeout=900).out
        ssh = next(
            line.removeprefix("Access your VM with: ")
            for line in out.splitlines()
            if line.startswith("Access your VM with: ")
        )
        run = out.rsplit("cloudinitd terminate ", 1)[1].split()[0]
        yield cli, ssh, run, out
    finally:
        runs = cli.home / "runs"
        for run_dir in runs.iterdir() if runs.is_dir() else []:
            with contextlib.suppress(Exception):
                cli("terminate", "--quiet", run_dir.name, expect=None, timeout=600)
            stop_home_share(run_dir)
        destroy_all(new_provider(cli.home))


def share_of(cli, run: str) -> tuple[str, int]:
    import json

    state = json.loads((cli.home / "runs" / run / "homeshare" / "share.json").read_text())
    return state["host"], state["port"]


@pytest.mark.lxc
def test_a_launch_vm_vm_reaches_only_the_shared_folder(local_net, tmp_path, host_files):
    shared = make_share_dir()
    try:
        with launch(local_net, tmp_path, "--share", str(shared)) as (cli, ssh, run, out):
            assert f"({shared}) is mounted at " in out
            host, port = share_of(cli, run)
            key = vm_run(ssh, "stat -c '%a %U:%G' /root/.ssh/cloudinitd-home-key")
            assert key.stdout.strip() == "600 root:root"
            assert vm_run(ssh, f"echo {MARKER} > /tmp/payload").returncode == 0
            # Each escape in its own batch: sftp -b stops (and fails) at the first error.
            for batch in (
                "get /etc/shadow /tmp/stolen",
                "get ../../../../../../etc/shadow /tmp/stolen",
                f"get {shared}/../../../../../etc/passwd /tmp/stolen",
                f"get {shared}/etc-link/passwd /tmp/stolen",
                f"get {shared}/up-link/shadow /tmp/stolen",
                f"put /tmp/payload {CRON_FILE}",
                "put /tmp/payload /root/.ssh/authorized_keys",
                "put /tmp/payload /etc/passwd",
                "ls /etc",
                f"get {shared}/../sibling-secret.txt /tmp/stolen",
            ):
                result = vm_sftp(ssh, host, port, batch)
                assert result.returncode != 0, f"{batch!r} succeeded:\n{result.stdout}"
            assert vm_run(ssh, "test -e /tmp/stolen").returncode != 0
            # Through the sshfs mount too.
            mount = next(line for line in out.splitlines() if " is mounted at " in line)
            mount = mount.rsplit(" is mounted at ", 1)[1].split()[0]
            assert vm_run(ssh, f"cat {mount}/etc-link/shadow").returncode != 0
            assert vm_run(ssh, f"cat {mount}/etc-link/passwd").returncode != 0
            # Files still cross both ways, inside the share.
            assert vm_run(ssh, f"cat {mount}/hello.txt").stdout == "hello from the share\n"
            assert vm_run(ssh, f"echo from-vm > {mount}/from-vm.txt").returncode == 0
            assert (shared / "from-vm.txt").read_text() == "from-vm\n"
            top = vm_sftp(ssh, host, port, "ls -1 /")
            assert top.returncode == 0 and top.stdout.split("\n", 1)[1].split() == ["/tmp"]
            up = vm_sftp(ssh, host, port, f"ls -1 {shared.parent}")
            assert up.stdout.split("\n", 1)[1].split() == [str(shared)]
    finally:
        shutil.rmtree(shared.parent)


@pytest.mark.lxc
def test_launch_vm_read_only_refuses_writes(local_net, tmp_path, host_files):
    shared = make_share_dir()
    try:
        with launch(local_net, tmp_path, "--share", str(shared), "--read-only") as (
            cli,
            ssh,
            run,
            out,
        ):
            assert "(read-only)" in out
            host, port = share_of(cli, run)
            mount = next(line for line in out.splitlines() if " is mounted at " in line)
            mount = mount.rsplit(" is mounted at ", 1)[1].split()[0]
            assert vm_run(ssh, f"cat {mount}/hello.txt").stdout == "hello from the share\n"
            assert vm_run(ssh, f"echo x > {mount}/new.txt").returncode != 0
            assert vm_run(ssh, f"rm {mount}/hello.txt").returncode != 0
            put = vm_sftp(ssh, host, port, f"put /etc/hostname {shared}/new.txt")
            assert put.returncode != 0
    finally:
        names = sorted(p.name for p in shared.iterdir())
        shutil.rmtree(shared.parent)
    assert names == ["etc-link", "hello.txt", "up-link"]


# --- cloudinitd itself not root: no chroot possible ---------------------------------------

NON_ROOT_SCRIPT = """
import json, sys
from pathlib import Path
from cloudinitd.homeshare import ensure_home_share
share = ensure_home_share(Path(sys.argv[1]), sys.argv[2], sys.argv[3], "nobody")
print(json.dumps({"confined": share.confined, "port": share.port, "key": share.key,
                  "known_host": share.known_host, "host": share.host, "user": share.user}))
"""


def python_for(user: str) -> list[str]:
    """An interpreter `user` can run with this venv's packages (ours lives under /root)."""
    import site
    import sys

    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    assert system.exists(), f"{system} is needed to run cloudinitd as {user} here"
    paths = [str(Path(__file__).resolve().parents[1]), *site.getsitepackages()]
    return ["env", f"PYTHONPATH={':'.join(paths)}", str(system)]


def test_a_non_root_cloudinitd_serves_with_its_users_rights_and_says_it(address, host_files):
    """sshd can chroot only as root: a share started by a normal user is not confined.

    It still authenticates as that user (never root): its sessions read what
    the user can (/etc/passwd), not what root can (/etc/shadow).
    """
    from types import SimpleNamespace

    from cloudinitd.cli.launch_vm import share_notes

    user = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="cloudinitd-nonroot-"))
    try:
        base.chmod(0o755)
        run = base / "run"
        shared = base / "shared"
        for d in (run, shared):
            d.mkdir()
            os.chown(d, user.pw_uid, user.pw_gid)
        (shared / "hello.txt").write_text("hello\n")
        proc = subprocess.run(
            [
                "setpriv",
                f"--reuid={user.pw_uid}",
                f"--regid={user.pw_gid}",
                "--clear-groups",
                *python_for("nobody"),
                "-c",
                NON_ROOT_SCRIPT,
                str(run),
                address,
                str(shared),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "HOME": str(base)},
        )
        assert proc.returncode == 0, proc.stderr
        import json

        info = json.loads(proc.stdout)
        assert info["confined"] is False and info["user"] == "nobody"
        share = SimpleNamespace(**info)
        client = connect(share)
        try:
            sftp = client.open_sftp()
            assert sftp.open(f"{shared}/hello.txt").read() == b"hello\n"
            with sftp.open(f"{shared}/from-vm.txt", "w") as f:
                f.write(b"as nobody\n")
            assert refused(lambda: sftp.open("/etc/shadow").read())  # root's: refused
            assert refused(lambda: sftp.open(CRON_FILE, "w").write(MARKER.encode()))
            assert sftp.open("/etc/passwd").read()  # the user's: reachable, and said so
        finally:
            client.close()
        assert (shared / "from-vm.txt").stat().st_uid == user.pw_uid
        notes = share_notes({"confined": False, "user": "nobody"}, chosen=True)
        assert len(notes) == 1 and "cannot chroot" in notes[0] and "nobody" in notes[0]
    finally:
        stop_home_share(base / "run")
        shutil.rmtree(base)


def test_launch_vm_notes_only_what_matters():
    from cloudinitd.cli.launch_vm import share_notes

    root_home = {"confined": True, "user": "root", "dir": "/root", "read_only": False}
    (note,) = share_notes(root_home, chosen=False)
    assert "root's home (/root)" in note and "--share DIR" in note
    assert "can read root's home" in share_notes({**root_home, "read_only": True}, False)[0]
    assert share_notes(root_home, chosen=True) == []  # a folder was chosen: nothing to add
    assert share_notes({**root_home, "user": "alice"}, chosen=False) == []
