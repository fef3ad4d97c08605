"""Base images for local instances: built once with debootstrap, then cached.

Layout under the image cache ($CLOUDINITD_IMAGE_CACHE, default
$CLOUDINITD_HOME/images):

    debian-12-rN.tar.gz     the customised debootstrapped rootfs (the cache)
    debian-12-rN-idB/rootfs/  that tarball unpacked, every owner shifted by
                            B = ID_BASE (container root is host uid B):
                            the read-only lower layer every instance's
                            overlay rootfs is stacked on
    debian-12-rN-idB/stamp  written last, so a half-unpacked base is never used
    debian-12.lock          serialises builds between processes

The cache is root's own (0700): a cache that another user owns or can write
to is refused before use, since its files become every instance's disk.

N is IMAGE_REVISION: a new revision builds beside the old one, so running
instances keep their lower layer.

Instances never write to the base: each one gets an overlay upper directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cloudinitd.errors import ProviderError
from cloudinitd.host import locks
from cloudinitd.providers import hostnet
from cloudinitd.providers.imagecache import check_private  # one cache rule for every kind
from cloudinitd.settings import settings

log = logging.getLogger("cloudinitd.local")

# Bump when the customisation below changes, so cached images are rebuilt.
IMAGE_REVISION = "4"

# Containers run in a user namespace: uid/gid 0..ID_COUNT-1 inside are
# ID_BASE.. on this machine (the usual LXC range). The unpacked base image is
# owned accordingly, so the overlay shows the right owners inside.
ID_BASE = 100000
ID_COUNT = 65536
# What the stamp of an unpacked base says: revision and id shift.
_STAMP = f"{IMAGE_REVISION} idmap={ID_BASE}:{ID_COUNT}"


@dataclass(frozen=True)
class ImageSpec:
    name: str
    suite: str
    packages: tuple[str, ...]
    minutes: int  # rough first-build time to tell the user


BASE_PACKAGES = (
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "sudo",
    "sshfs",
    "fuse3",
    "ca-certificates",
    "iproute2",
    "ifupdown",
    "iputils-ping",
    "procps",
    "less",
    "curl",
    "rsync",
    "netbase",
    "apt-utils",
    "gnupg",
)

IMAGES = {
    "debian-12": ImageSpec("debian-12", "bookworm", BASE_PACKAGES, 3),
}
DEFAULT_IMAGE = "debian-12"

# Runs in the instance before sshd on every boot: host key (one per instance,
# never shared through the base image) and the plan's ssh_user.
FIRSTBOOT_SCRIPT = """#!/bin/sh
set -e
[ -s /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
[ -s /etc/cloudinitd/ssh_user ] || exit 0
user=$(cat /etc/cloudinitd/ssh_user)
[ "$user" = root ] && exit 0
id "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash -G sudo "$user"
home=$(getent passwd "$user" | cut -d: -f6)
install -d -m 700 -o "$user" -g "$user" "$home/.ssh"
install -m 600 -o "$user" -g "$user" /etc/cloudinitd/authorized_keys "$home/.ssh/authorized_keys"
echo "$user ALL=(ALL) NOPASSWD:ALL" > /etc/sudoers.d/90-cloudinitd
chmod 440 /etc/sudoers.d/90-cloudinitd
"""

FIRSTBOOT_UNIT = """[Unit]
Description=cloudinitd instance setup (host key, ssh user)
Before=ssh.service
DefaultDependencies=no
After=local-fs.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/cloudinitd-firstboot

[Install]
WantedBy=multi-user.target
"""

SSHD_CONFIG = """# cloudinitd: one ed25519 host key made per instance at first boot
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
UseDNS no
"""

# Units a container does not need; masking them saves boot time and CPU.
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "systemd-timesyncd.service",
    "getty@.service",
    "systemd-networkd-wait-online.service",
    "dpkg-db-backup.timer",
    "man-db.timer",
)


def cache_dir() -> Path:
    return settings().image_cache_path()


def image_spec(name: str | None) -> ImageSpec:
    name = name or DEFAULT_IMAGE
    try:
        return IMAGES[name]
    except KeyError:
        raise ProviderError(
            f"unknown local image {name!r} (known: {', '.join(sorted(IMAGES))})"
        ) from None


def _versioned(spec: ImageSpec) -> str:
    return f"{spec.name}-r{IMAGE_REVISION}"


def tarball_path(spec: ImageSpec) -> Path:
    return cache_dir() / f"{_versioned(spec)}.tar.gz"


def _unpacked(spec: ImageSpec) -> str:
    # The id shift is part of the name: an unpacked base of another shift
    # (or none) may still be the lower layer of running instances.
    return f"{_versioned(spec)}-id{ID_BASE}"


def base_rootfs(spec: ImageSpec) -> Path:
    return cache_dir() / _unpacked(spec) / "rootfs"


def _stamp(spec: ImageSpec) -> Path:
    return cache_dir() / _unpacked(spec) / "stamp"


def ensure_cache_dir() -> Path:
    """The image cache, created 0700 and verified to be root's alone."""
    cache = cache_dir()
    if not cache.exists():
        cache.mkdir(parents=True, mode=0o700)
    check_private(cache, follow=True)
    if cache.stat().st_mode & 0o077:  # a cache made before it was private
        cache.chmod(0o700)
    return cache


def is_ready(spec: ImageSpec) -> bool:
    """The unpacked base is complete and in the current format.

    Raises ProviderError when the cache, the base directory or its rootfs
    are not owned as they must be (see check_private).
    """
    check_private(cache_dir(), follow=True)
    base = cache_dir() / _unpacked(spec)
    check_private(base)
    try:
        if _stamp(spec).read_text().strip() != _STAMP:
            return False
    except OSError:
        return False
    check_private(_stamp(spec))
    check_private(base_rootfs(spec), ID_BASE)
    return True


@contextlib.contextmanager
def _build_lock(spec: ImageSpec) -> Iterator[None]:
    ensure_cache_dir()
    with locks.exclusive(cache_dir() / f"{spec.name}.lock"):
        yield


def _run(cmd: list[str], what: str, **kw) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-1500:]
        raise ProviderError(f"{what} failed (exit {proc.returncode}): {tail}")


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _customise(root: Path, spec: ImageSpec, mirror: str) -> None:
    """Turn a fresh debootstrap into a cloud-like container image."""
    # The debian LXC template's `inet dhcp` makes sshd wait for DHCP; LXC
    # configures eth0 from the host, so the guest leaves it alone.
    _write(
        root / "etc/network/interfaces",
        "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet manual\n",
    )
    _write(root / "etc/apt/sources.list", f"deb {mirror} {spec.suite} main\n")
    _write(root / "etc/fstab", "# container: mounts come from LXC\n")
    _write(root / "etc/hostname", "localhost\n")
    # debootstrap copies the machine's resolv.conf; that server is unreachable
    # from the bridge and every lookup would hang for its timeout. With no
    # nameserver, lookups not in /etc/hosts fail at once.
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    _write(resolv, "# cloudinitd: no DNS on the bridge; the run's hosts are in /etc/hosts\n")
    _write(root / "etc/machine-id", "")  # systemd makes one per instance at boot
    with contextlib.suppress(FileNotFoundError):
        (root / "var/lib/dbus/machine-id").unlink()
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    _write(root / "etc/ssh/sshd_config.d/cloudinitd.conf", SSHD_CONFIG)
    _write(root / "usr/local/sbin/cloudinitd-firstboot", FIRSTBOOT_SCRIPT, 0o755)
    _write(root / "etc/systemd/system/cloudinitd-firstboot.service", FIRSTBOOT_UNIT)
    for target in ("multi-user.target.wants", "ssh.service.wants"):
        link = root / "etc/systemd/system" / target / "cloudinitd-firstboot.service"
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to("/etc/systemd/system/cloudinitd-firstboot.service")
    for unit in MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        if not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to("/dev/null")
    fuse_conf = root / "etc/fuse.conf"
    if fuse_conf.exists() and "\nuser_allow_other" not in fuse_conf.read_text():
        fuse_conf.write_text(fuse_conf.read_text() + "\nuser_allow_other\n")
    _write(root / "etc/cloudinitd/image", f"{spec.name} revision {IMAGE_REVISION}\n")
    # Smaller tarball, faster unpack: apt lists and .debs are re-fetched on use.
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        d = root / sub
        for entry in d.glob("*"):
            if entry.is_file():
                entry.unlink()


def _debootstrap(spec: ImageSpec, work: Path, mirror: str) -> Path:
    root = work / "rootfs"
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(spec.packages)}",
        spec.suite,
        str(root),
        mirror,
    ]
    if not shutil.which("debootstrap"):
        raise ProviderError("debootstrap not found: apt-get install debootstrap")
    _run(cmd, f"debootstrap {spec.suite}", timeout=3600)
    return root


def build_tarball(spec: ImageSpec, progress: Callable[[str], None]) -> Path:
    """debootstrap + customise + tar into the cache. Call with the build lock held."""
    mirror = hostnet.host_debian_mirror()
    target = tarball_path(spec)
    progress(f"building base image {spec.name} (first time, ~{spec.minutes} min)...")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f".build-{spec.name}-", dir=cache_dir()) as tmp:
        root = _debootstrap(spec, Path(tmp), mirror)
        _customise(root, spec, mirror)
        partial = target.with_name(target.name + ".partial")
        _run(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-czf", str(partial), "."],
            f"packing {spec.name}",
        )
        partial.replace(target)
    progress(f"built base image {spec.name} in {time.monotonic() - t0:.0f} s ({target})")
    for old in cache_dir().glob(f"{spec.name}-r*.tar.gz"):  # superseded revisions
        if old != target:
            old.unlink(missing_ok=True)
    return target


def shift_ids(root: Path, base: int = ID_BASE, count: int = ID_COUNT) -> int:
    """Add `base` to the owner and group of every file under root; returns the count.

    chown clears setuid/setgid bits and file capabilities, so the mode and
    the extended attributes are put back after it. Ids beyond `count` are
    mapped to nobody inside, so they are refused. Hard links are shifted once.
    """
    seen: set[int] = set()

    def shift(path: str) -> None:
        st = os.lstat(path)
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
            if st.st_ino in seen:
                return
            seen.add(st.st_ino)
        if st.st_uid >= count or st.st_gid >= count:
            raise ProviderError(f"{path}: owner {st.st_uid}:{st.st_gid} outside the id map")
        if stat.S_ISLNK(st.st_mode):
            os.lchown(path, st.st_uid + base, st.st_gid + base)
            return
        xattrs = {k: os.getxattr(path, k) for k in os.listxattr(path)}
        os.lchown(path, st.st_uid + base, st.st_gid + base)
        os.chmod(path, stat.S_IMODE(st.st_mode))
        for key, value in xattrs.items():
            os.setxattr(path, key, value)

    shift(str(root))
    done = 1
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            shift(os.path.join(dirpath, name))
            done += 1
    return done


def _unpack(spec: ImageSpec, tarball: Path) -> None:
    base = cache_dir() / _unpacked(spec)
    if base.exists():
        shutil.rmtree(base)
    tmp = cache_dir() / f".unpack-{_unpacked(spec)}"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "rootfs").mkdir(parents=True)
    _run(
        ["tar", "--numeric-owner", "--xattrs", "-C", str(tmp / "rootfs"), "-xzf", str(tarball)],
        f"unpacking {tarball}",
    )
    tmp.chmod(0o700)
    shift_ids(tmp / "rootfs")
    (tmp / "stamp").write_text(_STAMP + "\n")
    tmp.replace(base)


def ensure_image(name: str | None, progress: Callable[[str], None] | None = None) -> Path:
    """Return the base rootfs for image `name`, building and caching it first if needed.

    The cached tarball is reused when only the unpacked base is missing.
    """
    spec = image_spec(name)
    say = progress or log.info
    ensure_cache_dir()
    if is_ready(spec):
        return base_rootfs(spec)
    with _build_lock(spec):
        if is_ready(spec):  # another process built it while we waited
            return base_rootfs(spec)
        tarball = tarball_path(spec)
        if not tarball.exists():
            build_tarball(spec, say)
        check_private(tarball)
        t0 = time.monotonic()
        _unpack(spec, tarball)
        say(f"unpacked base image {spec.name} in {time.monotonic() - t0:.1f} s")
    return base_rootfs(spec)
