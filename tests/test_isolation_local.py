"""Isolation of local instances from this machine (issue 17, items 1, 2 and 5).

Fast checks of the pieces (guest file access, the image cache, terminal
text) need no container. The rest run as root inside real unprivileged LXC
containers (over ssh, as a boot script would) and try what the issue found
possible: writing the host's core_pattern, reading its kernel log, making
this machine follow a planted symlink, exhausting pids or filling the disk
through the console log. QEMU: a real VM process, sandboxed and not root.
"""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
from pathlib import Path

import pytest

from cloudinitd.errors import ProviderError
from cloudinitd.providers.local import image
from cloudinitd.providers.local import lxc as lxc_cmd
from tests.support.cli import Cli, write_plan
from tests.support.lxc import make_request, ssh

# --- guest files: never follow the guest's names (no container needed) ------------------


@pytest.fixture
def layers(tmp_path: Path) -> tuple[Path, Path, Path]:
    """An overlay-like (upper, lower) pair, and a host file a guest would love to overwrite."""
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    (lower / "etc").mkdir(parents=True)
    (lower / "root").mkdir(mode=0o700)
    upper.mkdir()
    victim = tmp_path / "host-file"
    victim.write_text("host secret\n")
    victim.chmod(0o600)
    return upper, lower, victim


def test_stopped_instance_write_ignores_a_planted_temp_symlink(layers):
    from cloudinitd.providers.local.instance import write_guest_file

    upper, lower, victim = layers
    (upper / "etc").mkdir()
    (upper / "etc" / "hosts.cidtmp").symlink_to(victim)
    (upper / "etc" / "hosts").symlink_to(victim)
    write_guest_file(upper, lower, "/etc/hosts", "10.0.0.1 a\n")
    assert victim.read_text() == "host secret\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    hosts = upper / "etc" / "hosts"
    assert not hosts.is_symlink() and hosts.read_text() == "10.0.0.1 a\n"


@pytest.mark.parametrize("link", ["root", "root/.ssh"])
def test_stopped_instance_write_refuses_a_symlinked_directory(layers, tmp_path, link):
    from cloudinitd.providers.guestfs import GuestPathError
    from cloudinitd.providers.local.instance import write_guest_file

    upper, lower, _ = layers
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir()
    (upper / link).parent.mkdir(parents=True, exist_ok=True)
    (upper / link).symlink_to(host_dir)
    with pytest.raises(GuestPathError):
        write_guest_file(upper, lower, "/root/.ssh/authorized_keys", "ssh-ed25519 AAAA x\n", 0o600)
    assert list(host_dir.iterdir()) == []


def test_new_guest_directories_copy_the_base_and_files_belong_to_guest_root(layers):
    from cloudinitd.providers.local.instance import GUEST_ROOT, write_guest_file

    upper, lower, _ = layers
    write_guest_file(upper, lower, "/root/.ssh/authorized_keys", "k\n", 0o600)
    root_dir = (upper / "root").stat()
    assert stat.S_IMODE(root_dir.st_mode) == 0o700  # as in the base, not 0755
    keys = (upper / "root/.ssh/authorized_keys").stat()
    assert (keys.st_uid, keys.st_gid) == GUEST_ROOT and stat.S_IMODE(keys.st_mode) == 0o600


def test_guest_names_cannot_escape_the_root(tmp_path):
    from cloudinitd.providers import guestfs

    root = tmp_path / "root"
    root.mkdir()
    (root / "up").symlink_to("..")
    with guestfs.opened_root(root) as fd:
        for name in ("../escape", "/up/escape"):
            with pytest.raises(OSError):
                guestfs.write_file(fd, name, b"x")
    assert not (tmp_path / "escape").exists()


def test_reading_a_guest_file_refuses_symlinks_and_fifos(tmp_path):
    from cloudinitd.providers import guestfs

    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret").write_text("host")
    (root / "link").symlink_to(tmp_path / "secret")
    os.mkfifo(root / "fifo")
    (root / "plain").write_text("guest")
    with guestfs.opened_root(root) as fd:
        assert guestfs.read_file(fd, "/plain") == b"guest"
        with pytest.raises(guestfs.GuestPathError):
            guestfs.read_file(fd, "/link")
        with pytest.raises(guestfs.GuestPathError):
            guestfs.read_file(fd, "/fifo")  # would block the host's reader


# --- the image cache ---------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "images"
    monkeypatch.setenv("CLOUDINITD_IMAGE_CACHE", str(path))
    return path


def test_a_new_image_cache_is_private(cache):
    image.ensure_cache_dir()
    st = cache.stat()
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700


@pytest.mark.parametrize("change", ["owner", "group-writable", "world-writable"])
def test_a_cache_someone_else_controls_is_refused(cache, change):
    cache.mkdir(mode=0o700)
    if change == "owner":
        os.chown(cache, 4242, 4242)
    else:
        cache.chmod(0o770 if change == "group-writable" else 0o707)
    with pytest.raises(ProviderError, match=r"image cache .* refusing to use it"):
        image.ensure_image("debian-12")
    with pytest.raises(ProviderError, match="refusing"):
        image.is_ready(image.image_spec("debian-12"))


def test_an_unpacked_base_not_owned_by_root_is_refused(cache):
    spec = image.image_spec("debian-12")
    base = image.base_rootfs(spec).parent
    (base / "rootfs").mkdir(parents=True)
    os.chown(base / "rootfs", image.ID_BASE, image.ID_BASE)
    (base / "stamp").write_text(image._STAMP + "\n")
    cache.chmod(0o700)
    base.chmod(0o700)
    assert image.is_ready(spec)
    os.chown(base / "stamp", 4242, 4242)
    with pytest.raises(ProviderError, match="stamp is owned by uid 4242"):
        image.is_ready(spec)


def test_shifting_ids_keeps_setuid_bits_and_hard_links(tmp_path):
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    su = root / "bin" / "su"
    su.write_text("#!/bin/sh\n")
    su.chmod(0o4755)
    os.link(su, root / "bin" / "su2")
    (root / "bin" / "sh").symlink_to("su")
    mail = root / "mail"
    mail.mkdir()
    os.chown(mail, 0, 8)
    mail.chmod(0o2775)
    image.shift_ids(root, 100000, 65536)
    assert (su.stat().st_uid, su.stat().st_gid) == (100000, 100000)
    assert stat.S_IMODE(su.stat().st_mode) == 0o4755
    assert (mail.stat().st_gid, stat.S_IMODE(mail.stat().st_mode)) == (100008, 0o2775)
    assert (root / "bin" / "sh").lstat().st_uid == 100000


# --- text from instances on the operator's terminal --------------------------------------


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("\x1b[1;31mfailed\x1b[0m", "failed"),
        ("a\x1b]0;owned\x07b", "ab"),  # window title
        ("a\x1b]52;c;cm0gLXJm\x1b\\b", "ab"),  # clipboard
        ("x\x1bP+q\x1b\\y", "xy"),  # DCS
        ("reset\x1bc", "reset"),
        ("ok\rFAKE", "ok\nFAKE"),  # no overprinting
        ("\u009b2Jz", "z"),  # 8-bit CSI
        ("bell\x07nul\x00del\x7f", "bellnuldel"),
        ("rtl\u202eevil", "rtlevil"),
        ("kept\ttabs\nand lines", "kept\ttabs\nand lines"),
    ],
)
def test_text_for_the_terminal_has_no_escapes(raw, shown):
    from cloudinitd.textsafe import for_terminal

    assert for_terminal(raw) == shown


def test_console_tail_is_stripped(tmp_path):
    directory = tmp_path / "cid-x"
    directory.mkdir()
    (directory / lxc_cmd.CONSOLE_LOG).write_bytes(
        b"booting\r\n\x1b]0;pwned\x07Started \x1b[32mssh\x1b[0m\r\n\x1b]52;c;ZXZpbA==\x07bye\r\n"
    )
    tail = lxc_cmd.log_tail("cid-x", tmp_path)
    assert tail == "console: booting | Started ssh | bye"


def test_failure_output_on_the_cli_is_stripped(capsys):
    from cloudinitd.cli import output

    output.error("step failed: \x1b]0;title\x07boom\x1b[2J")
    output.info("  | \x1b]52;c;eA==\x07line")
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err
    assert "cloudinitd: error: step failed: boom" in err and "  | line" in err


# --- real unprivileged containers --------------------------------------------------------


@pytest.fixture(scope="module")
def box(local_provider, local_keypair):
    """One running instance: (provider, info, private key)."""
    request = make_request("isorun", "box", 1, local_keypair)
    infos = local_provider.launch(request, lambda index, info: None)
    (info,) = local_provider.wait_running([i.instance_id for i in infos], timeout=120)
    return local_provider, info, local_keypair.private


def _root(box, command: str) -> subprocess.CompletedProcess:
    _, info, key = box
    return ssh(info.address, key, command)


@pytest.mark.lxc
def test_container_root_is_an_unprivileged_uid_here(box):
    provider, info, _ = box
    mapped = _root(box, "id -u; cat /proc/self/uid_map").stdout.split()
    assert mapped[:4] == ["0", "0", str(image.ID_BASE), str(image.ID_COUNT)]
    pid = lxc_cmd.init_pid(info.instance_id, provider.lxcpath)
    uids = Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[:4]
    assert uids == [str(image.ID_BASE)] * 4


@pytest.mark.lxc
def test_core_pattern_cannot_be_written_from_a_fresh_proc(box):
    pattern = Path("/proc/sys/kernel/core_pattern")
    before = pattern.read_text()
    # A harmless value (a core file name, not a |program), put back if it got through.
    try:
        result = _root(
            box,
            "mkdir -p /mnt/freshproc && mount -t proc proc /mnt/freshproc && "
            "echo core.cidtest > /mnt/freshproc/sys/kernel/core_pattern",
        )
        after = pattern.read_text()
    finally:
        if pattern.read_text() != before:
            pattern.write_text(before)
    assert result.returncode != 0
    assert after == before


@pytest.mark.lxc
def test_host_kernel_log_is_not_readable(box):
    result = _root(box, "dmesg")
    assert result.returncode != 0 and result.stdout == ""


@pytest.mark.lxc
def test_pids_are_capped_and_the_cap_cannot_be_raised(box):
    from cloudinitd.providers.local.instance import PIDS_MAX

    shown = _root(
        box, "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"
    )
    assert shown.stdout.strip() == str(PIDS_MAX)
    raised = _root(
        box, "echo max > /sys/fs/cgroup/pids/pids.max || echo max > /sys/fs/cgroup/pids.max"
    )
    assert raised.returncode != 0


@pytest.mark.lxc
def test_console_log_stays_bounded(box):
    provider, info, _ = box
    flood = _root(box, "head -c 3000000 /dev/zero | base64 -w 100 > /dev/console")
    assert flood.returncode == 0, flood.stderr
    directory = provider.lxcpath / info.instance_id
    logs = [p for p in directory.iterdir() if p.name.startswith(lxc_cmd.CONSOLE_LOG)]
    assert logs and all(p.stat().st_size <= 1 << 20 for p in logs)
    assert sum(p.stat().st_size for p in logs) <= 2 << 20


@pytest.mark.lxc
def test_hosts_refresh_never_follows_the_guests_symlinks(box, tmp_path):
    from cloudinitd.providers.local.hosts import refresh_hosts

    provider, info, _ = box
    victims = [tmp_path / "victim-tmp", tmp_path / "victim-hosts"]
    for victim in victims:
        victim.write_text("host file\n")
        victim.chmod(0o600)
    planted = _root(box, f"ln -sf {victims[0]} /etc/hosts.cidtmp && ln -sf {victims[1]} /etc/hosts")
    assert planted.returncode == 0, planted.stderr
    with provider._lock():
        refresh_hosts(provider.lxcpath, "isorun")
    for victim in victims:
        assert victim.read_text() == "host file\n"
        assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    hosts = _root(box, "test ! -L /etc/hosts && stat -c %u /etc/hosts && cat /etc/hosts")
    assert hosts.returncode == 0 and hosts.stdout.startswith("0\n") and "box-0" in hosts.stdout



@pytest.mark.lxc
@pytest.mark.slow
def test_scale_does_not_follow_a_symlink_planted_in_an_instance(local_cli: Cli, tmp_path):
    plan = write_plan(
        tmp_path / "plan",
        """
        name: iso
        services:
          svc:
            cloud: local
            boot: boot.sh.j2
        """,
        {"boot.sh.j2": "hostname > /tmp/booted\n"},
    )
    local_cli("boot", plan, "--name", "iso")
    key = local_cli.home / "runs" / "iso" / "id_ed25519"
    (first,) = local_cli("status", "iso", "--json").json()["services"]["svc"]["instances"]
    victim = tmp_path / f"victim-{secrets.token_hex(3)}"
    victim.write_text("host file\n")
    victim.chmod(0o600)
    planted = ssh(first["address"], key, f"ln -sf {victim} /etc/hosts.cidtmp")
    assert planted.returncode == 0, planted.stderr

    local_cli("scale", "iso", "svc", "2")

    assert victim.read_text() == "host file\n" and stat.S_IMODE(victim.stat().st_mode) == 0o600
    instances = local_cli("status", "iso", "--json").json()["services"]["svc"]["instances"]
    assert len(instances) == 2 and {i["state"] for i in instances} == {"running"}
    hosts = ssh(first["address"], key, "cat /etc/hosts").stdout
    assert "svc-0" in hosts and "svc-1" in hosts
    local_cli("terminate", "iso")


# --- QEMU: sandboxed, not root -----------------------------------------------------------


@pytest.mark.qemu
def test_qemu_runs_sandboxed_as_an_unprivileged_user(qemu_base_image, tmp_path):
    from cloudinitd.providers.qemu import vm

    files = vm.VmFiles(tmp_path / "vm")
    files.dir.mkdir(mode=0o700)
    vm.create_overlay(qemu_base_image.disk, files.overlay)
    seed = files.dir / "seed.img"
    seed.write_bytes(b"\0" * 65536)
    cmd = vm.qemu_command(
        files,
        kernel=qemu_base_image.kernel,
        initrd=qemu_base_image.initrd,
        seed=seed,
        tap="",
        mac="52:54:00:00:00:01",
        memory_mb=128,
        cpus=1,
        accel="tcg",
    )
    # No tap for this check: the VM needs no network to show who runs it.
    at = cmd.index("-netdev")
    del cmd[at : at + 4]
    pid = vm.start(cmd, files)
    try:
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        import pwd

        user = pwd.getpwnam(vm.RUNAS_USER)
        assert status["Uid"].split() == [str(user.pw_uid)] * 4
        assert status["Seccomp"].strip() == "2"  # filter mode
        assert int(status["CapEff"].strip(), 16) == 0
    finally:
        vm.stop(files)


# --- what the host grants the containers' root (no container needed) ---------------------


def _as_uid(uid: int, fn) -> str:
    """Run fn() in a child process with uid/gid `uid`; returns 'ok' or the error's name."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            fn()
            result = b"ok"
        except OSError as exc:
            result = type(exc).__name__.encode()
        os.write(write, result)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        out = fh.read().decode()
    os.waitpid(pid, 0)
    return out


def test_container_root_may_pass_through_private_directories_but_not_list_them(tmp_path):
    from cloudinitd.providers.local import hostlimits

    private = tmp_path / "home" / "local"
    target = private / "containers" / "cid-x"
    target.mkdir(parents=True)
    for d in (tmp_path, tmp_path / "home", private, private / "containers"):
        d.chmod(0o700)
    uid = image.ID_BASE
    assert _as_uid(uid, lambda: os.stat(target)) == "PermissionError"
    hostlimits.allow_traverse(target, uid)
    assert _as_uid(uid, lambda: os.stat(target)) == "ok"
    assert _as_uid(uid, lambda: os.listdir(private)) == "PermissionError"
    assert _as_uid(4242, lambda: os.stat(target)) == "PermissionError"  # nobody else
    private.chmod(0o700)  # a chmod lowers the ACL mask; the next start repairs it
    assert _as_uid(uid, lambda: os.stat(target)) == "PermissionError"
    hostlimits.allow_traverse(target, uid)
    assert _as_uid(uid, lambda: os.stat(target)) == "ok"


def test_subordinate_ids_are_added_once(tmp_path, monkeypatch):
    from cloudinitd.providers.local import hostlimits

    files = (tmp_path / "subuid", tmp_path / "subgid")
    files[0].write_text("alice:200000:65536")  # no final newline
    monkeypatch.setattr(hostlimits, "SUBID_FILES", files)
    hostlimits.ensure_subids("root", 100000, 65536)
    hostlimits.ensure_subids("root", 100000, 65536)
    assert files[0].read_text() == "alice:200000:65536\nroot:100000:65536\n"
    assert files[1].read_text() == "root:100000:65536\n"
