"""Each local instance writes on its own size-capped disk (issue 17: "disk for instances").

Without a cap, a boot script (root in its container) can fill this
machine's disk through its overlay's upper layer. Here: the `disk:` option
of a local cloud entry is checked when the plan is loaded; from inside a
real container, writing past the cap fails with ENOSPC while what lands
on this machine stays within the cap, the boot and ready scripts still
run, a disk left unmounted (as after a reboot) is mounted again before
anything is written to it, and terminate leaves no mount and no loop
device behind.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from cloudinitd.bytesize import DISK_DEFAULT, disk_size, format_size, parse_size
from cloudinitd.providers.local import boot, disk, rootfs
from cloudinitd.providers.local import lxc as lxc_cmd
from cloudinitd.providers.local.create import run_prefix
from cloudinitd.providers.local.hosts import refresh_hosts
from tests.support.cli import Cli, write_plan
from tests.support.lxc import loops_under, make_request, mounts_under, ssh, wait_no_loops

# --- the option (no container) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [("8G", 8 << 30), ("512M", 512 << 20), ("512MiB", 512 << 20), ("4gb", 4 << 30),
     ("1.5G", 3 << 29), ("1T", 1 << 40), (" 256M ", 256 << 20)],
)  # fmt: skip
def test_disk_sizes_parse_in_binary_units(text, size):
    assert disk_size(text) == size


@pytest.mark.parametrize("text", ["100M", "255M", "2T", "1025G", "0G", "8", "8 X", "-1G", "G", "", 8])
def test_disk_sizes_out_of_bounds_or_without_unit_are_refused(text):
    with pytest.raises(ValueError):
        disk_size(text)


def test_default_disk_and_shown_sizes():
    assert disk_size(None) == DISK_DEFAULT == 8 << 30
    assert format_size(8 << 30) == "8G" and format_size(parse_size("1536M")) == "1536M"
    assert format_size(1000) == "1000"


@pytest.mark.parametrize("value", ["64M", "2T", "lots", "8"])
def test_a_bad_disk_option_is_one_located_line_and_exit_2(tmp_path, value):
    plan = write_plan(
        tmp_path,
        f"""
        name: capped
        clouds:
          small:
            provider: local
            disk: "{value}"
        services:
          svc:
            cloud: small
        """,
    )
    res = Cli(tmp_path / "home")("validate", plan, expect=2)
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.err, res.err
    assert lines[0] == (
        f"cloudinitd: error: {plan}:5: cloud 'small': disk: expected a disk size "
        "from 256M to 1T, like 8G or 512M (binary units)"
    )


def test_a_good_disk_option_validates(tmp_path):
    plan = write_plan(tmp_path, """
        name: capped
        clouds:
          small: {provider: local, disk: 512M}
        services:
          svc: {cloud: small}
        """)
    Cli(tmp_path / "home")("validate", plan)


# --- real containers ----------------------------------------------------------------------

CAP = "256M"


def _allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def _host_bytes(directory: Path) -> int:
    """What a container's folder takes on this machine's disk: not its disk image, nor
    what is mounted in it (the disk, the overlay)."""
    total = 0
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not os.path.ismount(Path(root, d))]
        total += sum(os.lstat(Path(root, f)).st_blocks * 512 for f in files
                     if Path(root, f) != directory / disk.IMAGE)
    return total


@pytest.mark.lxc
@pytest.mark.slow
def test_writing_past_the_cap_fails_inside_and_stays_off_this_machine(local_cli: Cli, tmp_path):
    plan = write_plan(
        tmp_path / "plan",
        f"""
        name: capped
        clouds:
          capped: {{provider: local, disk: {CAP}}}
        services:
          svc:
            cloud: capped
            boot: boot.sh.j2
            ready: ready.sh.j2
        """,
        {"boot.sh.j2": "echo booted > /root/booted\n", "ready.sh.j2": "test -s /root/booted\n"},
    )
    lxcpath = local_cli.home / "local" / "containers"
    local_cli("boot", plan, "--name", "capped")
    status = local_cli("status", "capped", "--json").json()
    (instance,) = status["services"]["svc"]["instances"]
    assert instance["state"] == "running", status
    key = local_cli.home / "runs" / "capped" / "id_ed25519"
    address = instance["address"]
    (directory,) = [d for d in lxcpath.iterdir() if d.name.startswith("cid-")]
    image = directory / disk.IMAGE
    assert image.stat().st_size == parse_size(CAP)
    assert mounts_under(directory) == [str(directory / disk.MOUNT), str(directory / rootfs.ROOTFS)]
    assert len(loops_under(directory)) == 1

    seen = ssh(address, key, "df -B1 --output=size / | tail -1; cat /root/booted")
    assert seen.returncode == 0, seen.stderr
    size, booted = seen.stdout.split()
    assert int(size) <= parse_size(CAP) and booted == "booted"

    before = _host_bytes(directory)
    fill = ssh(address, key, "dd if=/dev/zero of=/var/fill bs=1M count=512 conv=fsync")
    assert fill.returncode != 0 and "No space left on device" in fill.stderr, fill
    written = ssh(address, key, "stat -c %s /var/fill")
    assert parse_size(CAP) // 2 < int(written.stdout) < parse_size(CAP), written
    # What this machine gave: the image, within its cap; the folder beside it unchanged.
    assert _allocated(image) <= parse_size(CAP)
    assert _host_bytes(directory) - before < 16 << 20

    # The instance still works once it frees space, and the operator's commands too.
    freed = ssh(address, key, "rm /var/fill && echo more > /root/more && cat /root/more")
    assert freed.returncode == 0 and freed.stdout == "more\n", freed
    local_cli("exec", "capped", "--", "test", "-s", "/root/booted")

    local_cli("terminate", "capped")
    assert not directory.exists()
    assert mounts_under(lxcpath) == []
    assert wait_no_loops(lxcpath) == []


@pytest.mark.lxc
def test_a_disk_left_unmounted_is_mounted_before_any_write(local_provider, local_keypair):
    """As after a reboot: nothing mounted. /etc/hosts for the stopped instance goes
    onto its disk (not into the empty mount point here), and it boots with both."""
    request = make_request("remount", "box", 1, local_keypair)
    (info,) = local_provider.launch(request, lambda index, info: None)
    (info,) = local_provider.wait_running([info.instance_id], timeout=120)
    name, lxcpath = info.instance_id, local_provider.lxcpath
    directory = lxcpath / name
    assert info.extra["disk"] == "8G"
    wrote = ssh(info.address, local_keypair.private, "echo kept > /root/kept && sync")
    assert wrote.returncode == 0, wrote.stderr

    lxc_cmd.stop(name, lxcpath)
    rootfs.unmount(directory)
    disk.unmount(directory)
    assert mounts_under(directory) == [] and wait_no_loops(directory) == []
    assert list((directory / disk.MOUNT).iterdir()) == []

    with local_provider._lock():
        refresh_hosts(lxcpath, "remount")
    assert mounts_under(directory) == [str(directory / disk.MOUNT)]
    assert (directory / disk.MOUNT / "delta0" / "etc" / "hosts").exists()

    with local_provider._lock():
        boot.start_one(lxcpath, name)
    (info,) = local_provider.wait_running([name], timeout=120)
    seen = ssh(info.address, local_keypair.private, "cat /root/kept; grep -c box-0 /etc/hosts")
    assert seen.stdout.split() == ["kept", "1"], seen

    local_provider.terminate([name])
    assert mounts_under(lxcpath) == [] and wait_no_loops(lxcpath) == []


@pytest.mark.lxc
def test_a_half_made_instance_with_its_disk_mounted_is_removed_whole(local_provider, local_keypair,
                                                                     monkeypatch):
    """A failure after the disk is mounted, before the config: the folder, its mount
    and its loop device all go (the same path a crash leaves to terminate)."""
    from cloudinitd.providers.local import instance as inst

    def broken(*args, **kwargs):
        raise OSError("injected failure after the disk was made")

    monkeypatch.setattr(inst, "write_guest_file", broken)
    request = make_request("halfdisk", "box", 1, local_keypair)
    with pytest.raises(OSError, match="injected"):
        local_provider.launch(request, lambda index, info: None)
    lxcpath = local_provider.lxcpath
    prefix = run_prefix("halfdisk")
    assert [d for d in lxcpath.iterdir() if d.name.startswith(prefix)] == []
    assert [m for m in mounts_under(lxcpath) if prefix in m] == []
    assert [lo for lo in wait_no_loops(lxcpath) if prefix in lo] == []


def test_losetup_is_there():
    """loops_under reads `losetup -a`: a missing losetup must fail, not pass as 'no loops'."""
    assert subprocess.run(["losetup", "--version"], capture_output=True).returncode == 0


@pytest.mark.lxc
def test_namespaces_made_meanwhile_do_not_keep_a_terminated_disk(local_provider, local_keypair,
                                                                 tmp_path):
    """A mount namespace copies every mount there is when it is made. A neighbour
    container started later and a home share's jail (a private namespace) must not
    keep the first instance's disk, and its loop device, after it is terminated:
    removing the mount points detaches their copies everywhere (Linux >= 3.18)."""
    from cloudinitd import homeshare_jail

    first = local_provider.launch(make_request("nsa", "a", 1, local_keypair), lambda i, x: None)
    later = local_provider.launch(make_request("nsb", "b", 1, local_keypair), lambda i, x: None)
    names = [first[0].instance_id, later[0].instance_id]
    local_provider.wait_running(names, timeout=120)
    directory = local_provider.lxcpath / names[0]
    run_dir, shared = tmp_path / "run", tmp_path / "shared"
    run_dir.mkdir()
    shared.mkdir()
    homeshare_jail.prepare(run_dir)
    jail = subprocess.Popen(homeshare_jail.wrap(["sleep", "300"], run_dir, str(shared), True))
    try:
        cmdline = Path(f"/proc/{jail.pid}/cmdline")
        while jail.poll() is None and not cmdline.read_bytes().startswith(b"sleep\0"):
            time.sleep(0.05)  # until the jail is set up and its shell has become the program
        assert jail.poll() is None, "the jail did not start"
        assert len(loops_under(directory)) == 1

        copies = Path(f"/proc/{jail.pid}/mountinfo").read_text()
        assert f"{directory}/{disk.MOUNT} " in copies  # the jail holds a copy of the disk

        local_provider.terminate([names[0]])

        assert wait_no_loops(directory, timeout=20) == []
        assert lxc_cmd.state(names[1], local_provider.lxcpath) == "RUNNING"
    finally:
        jail.kill()
        jail.wait()
        homeshare_jail.release(run_dir)
        local_provider.terminate(names)
