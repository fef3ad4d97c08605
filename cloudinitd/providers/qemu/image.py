"""The qemu provider's base image: a Debian root filesystem built from packages.

Built once per recipe and cached: debootstrap a bookworm root filesystem,
trim it for a fast boot under emulation, pack it into an ext4 image without
loop devices (`mkfs.ext4 -d`), convert to qcow2, and keep the kernel and
initrd beside it so QEMU boots them directly (no boot loader to emulate).
Instances are copy-on-write overlays of this disk.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cloudinitd.errors import ProviderError
from cloudinitd.host import locks
from cloudinitd.providers.local.image import check_private
from cloudinitd.settings import settings

MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
IMAGE_NAMES = {"debian-12": SUITE, "debian-bookworm": SUITE, "debian": SUITE}
DISK_SIZE = "4G"

# Everything a plan needs pre-installed: under TCG an apt-get inside the VM
# costs minutes, so the NFS packages ship in the image.
PACKAGES = [
    "linux-image-amd64",
    "initramfs-tools",
    "systemd-sysv",
    "udev",
    "dbus",
    "kmod",
    "ifupdown",
    "iproute2",
    "netbase",
    "openssh-server",
    "cloud-init",
    "sudo",
    "python3",
    # debootstrap does not resolve virtual packages: name their providers.
    "python3-cffi-backend",
    "procps",
    "nfs-kernel-server",
    "nfs-common",
]

# Units that only slow a boot under emulation (or wait for things we lack).
MASKED_UNITS = [
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "apt-daily.service",
    "apt-daily-upgrade.service",
    "e2scrub_all.timer",
    "e2scrub_all.service",
    "e2scrub_reap.service",
    "fstrim.timer",
    "man-db.timer",
    "systemd-networkd-wait-online.service",
    "ifupdown-wait-online.service",
    "systemd-timesyncd.service",
    "getty@tty1.service",
    # Stages we do not use (keys, hostname, users and files are all done by
    # the init stage): each costs a Python start-up, ~10-40 s under TCG.
    "cloud-config.service",
    "cloud-final.service",
    # Kernel facilities no plan here needs; each modprobe/mount is seconds under TCG.
    "systemd-pstore.service",
    "modprobe@drm.service",
    "modprobe@efi_pstore.service",
    "modprobe@dm_mod.service",
    "modprobe@loop.service",
    "modprobe@fuse.service",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount",
    "nfs-blkmap.service",
]
# Drivers for emulated hardware we never use: udev would load them at boot.
BLACKLIST = [
    "floppy",
    "ata_piix",
    "ata_generic",
    "pata_acpi",
    "i2c_piix4",
    "psmouse",
    "serio_raw",
    "pcspkr",
    "evdev",
    "button",
    "kvm",
    "kvm_amd",
    "kvm_intel",
    "ccp",
    "drm",
    "bochs",
    "joydev",
    "aesni_intel",
    "ghash_clmulni_intel",
    "sha1_ssse3",
    "sha256_ssse3",
    "sha512_ssse3",
    "crc32_pclmul",
    "crct10dif_pclmul",
    "efi_pstore",
    "dm_mod",
]
# Installed but started on demand by the scripts that need them.
DISABLED_UNITS = {"nfs-server.service": "multi-user.target.wants"}

# The initrd only has to find a virtio disk with ext4 on it.
INITRD_MODULES = ["virtio_pci", "virtio_blk", "virtio_net", "ext4", "crc32c_generic"]

CLOUD_CFG = """\
# cloudinitd qemu image: only the NoCloud seed exists, never probe a network
# metadata service (there is no route to one and probing costs minutes).
datasource_list: [NoCloud]
system_info:
  network:
    renderers: [eni]
    activators: [eni]
manage_etc_hosts: true
ssh_genkeytypes: [ed25519, ecdsa]
# Only the init stage runs (cloud-config / cloud-final are masked).
cloud_init_modules: [write_files, set_hostname, update_hostname, update_etc_hosts,
                     users_groups, ssh]
ssh_fp_console_blacklist: [ssh-ed25519, ecdsa-sha2-nistp256]
no_ssh_fingerprints: true
# The serial console is slow under emulation: cloud-init's output goes to its log file.
output: {all: ">> /var/log/cloud-init-output.log"}
"""

# Each change to the recipe gets a new cache key, so stale images are never reused.
RECIPE = "\n".join(
    [
        SUITE,
        MIRROR,
        DISK_SIZE,
        *PACKAGES,
        *MASKED_UNITS,
        *INITRD_MODULES,
        *BLACKLIST,
        CLOUD_CFG,
        "v4",
    ]
)


@dataclass(frozen=True)
class BaseImage:
    disk: Path  # qcow2, used read-only as the backing file of overlays
    kernel: Path
    initrd: Path

    def exists(self) -> bool:
        return self.disk.is_file() and self.kernel.is_file() and self.initrd.is_file()


def image_cache(home: Path) -> Path:
    return settings().image_cache_path(home)


def image_dir(cache: Path, image: str) -> Path:
    key = hashlib.sha256(RECIPE.encode()).hexdigest()[:12]
    return cache / f"qemu-{image}-{key}"


def base_image(cache: Path, image: str) -> BaseImage:
    d = image_dir(cache, image)
    return BaseImage(d / "disk.qcow2", d / "vmlinuz", d / "initrd.img")


def _run(cmd: list[str], log: Path, **kw) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, **kw)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise ProviderError(
            f"image build step failed: {' '.join(cmd[:3])}... "
            f"(exit {proc.returncode}); log {log}:\n{tail}"
        )


def _check_private(cache: Path, target: BaseImage) -> None:
    """Refuse a cache whose files someone other than root could have changed."""
    check_private(cache, follow=True)
    check_private(target.disk.parent)
    for path in (target.disk, target.kernel, target.initrd):
        check_private(path)


def ensure_image(
    cache: Path, image: str = "debian-12", progress: Callable[[str], None] | None = None
) -> BaseImage:
    """Return the cached base image for `image`, building it first if needed.

    Concurrent callers (parallel launches, several runs) wait on one lock file
    and build once.
    """
    if image not in IMAGE_NAMES:
        raise ProviderError(
            f"qemu provider: unknown image {image!r} (known: {', '.join(sorted(IMAGE_NAMES))})"
        )
    target = base_image(cache, image)
    _check_private(cache, target)
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    with locks.exclusive(cache / f".qemu-{image}.lock"):
        if target.exists():
            return target
        _build(target, IMAGE_NAMES[image], progress or (lambda _m: None))
    return target


def _build(target: BaseImage, suite: str, progress: Callable[[str], None]) -> None:
    final = target.disk.parent
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    log = final.parent / f"{final.name}.build.log"
    log.write_text("")
    started = time.monotonic()
    try:
        rootfs = work / "rootfs"
        progress(f"building qemu image {final.name} (debootstrap {suite}; log {log})")
        debs = final.parent / "debs"  # kept across builds: a rebuild downloads nothing
        debs.mkdir(exist_ok=True)
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                f"--cache-dir={debs}",
                suite,
                str(rootfs),
                MIRROR,
            ],
            log,
        )
        _customise(rootfs, log)
        kernel, initrd = _kernel_files(rootfs)
        shutil.copy2(kernel, work / "vmlinuz")
        shutil.copy2(initrd, work / "initrd.img")
        raw = work / "disk.raw"
        progress("packing root filesystem (mkfs.ext4 -d)")
        _run(
            ["mkfs.ext4", "-q", "-F", "-L", "cidroot", "-d", str(rootfs), str(raw), DISK_SIZE], log
        )
        _run(
            ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(work / "disk.qcow2")],
            log,
        )
        raw.unlink()
        shutil.rmtree(rootfs)
        (work / "recipe.txt").write_text(RECIPE + "\n")
        if final.exists():
            shutil.rmtree(final)
        work.rename(final)
        progress(f"qemu image ready in {time.monotonic() - started:.0f} s")
        _prune_old(final)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _prune_old(current: Path) -> None:
    """Drop images of older recipes (running VMs keep their open backing file)."""
    prefix = current.name.rsplit("-", 1)[0] + "-"
    for old in current.parent.glob(prefix + "*"):
        if old != current and old.is_dir() and len(old.name) == len(current.name):
            shutil.rmtree(old, ignore_errors=True)
            (old.parent / f"{old.name}.build.log").unlink(missing_ok=True)


def _kernel_files(rootfs: Path) -> tuple[Path, Path]:
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise ProviderError("image build: no kernel in /boot (linux-image-amd64 missing?)")
    version = kernels[-1].name.removeprefix("vmlinuz-")
    initrd = rootfs / "boot" / f"initrd.img-{version}"
    if not initrd.is_file():
        raise ProviderError(f"image build: no initrd for kernel {version}")
    return kernels[-1], initrd


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _customise(rootfs: Path, log: Path) -> None:
    etc = rootfs / "etc"
    _write(etc / "fstab", "LABEL=cidroot / ext4 defaults,errors=remount-ro 0 0\n")
    # Interfaces get their address from cloud-init's NoCloud network-config.
    _write(
        etc / "network/interfaces",
        "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n",
    )
    (etc / "network/interfaces.d").mkdir(parents=True, exist_ok=True)
    # No DNS server is reachable from the bridge; an empty file fails lookups at
    # once (127.0.0.1) instead of after resolver timeouts.
    resolv = etc / "resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    _write(resolv, "# no resolver: hosts on the cloudinitd bridge use /etc/hosts\n")
    _write(etc / "apt/sources.list", f"deb {MIRROR} {SUITE} main\n")
    _write(
        etc / "apt/apt.conf.d/90cloudinitd",
        'APT::Install-Recommends "false";\nDpkg::Use-Pty "false";\n',
    )
    _write(etc / "cloud/cloud.cfg.d/05_cloudinitd.cfg", CLOUD_CFG)
    # Each VM must get its own machine id and SSH host keys on first boot.
    _write(etc / "machine-id", "")
    dbus_id = rootfs / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
    for key in (etc / "ssh").glob("ssh_host_*"):
        key.unlink()
    _write(etc / "hostname", "localhost\n")
    _write(etc / "hosts", "127.0.0.1 localhost\n")
    _write(
        etc / "modprobe.d/cloudinitd-blacklist.conf", "".join(f"blacklist {m}\n" for m in BLACKLIST)
    )
    # A volatile journal: no flush to disk at boot, nothing to keep for a throwaway VM.
    _write(etc / "systemd/journald.conf.d/cloudinitd.conf", "[Journal]\nStorage=volatile\n")
    units = etc / "systemd/system"
    for unit in MASKED_UNITS:
        link = units / unit
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to("/dev/null")
    for unit, wants in DISABLED_UNITS.items():
        (units / wants / unit).unlink(missing_ok=True)
    # A small initrd unpacks in a fraction of the time under TCG.
    _write(etc / "initramfs-tools/conf.d/cloudinitd.conf", "MODULES=list\nCOMPRESS=gzip\n")
    _write(etc / "initramfs-tools/modules", "\n".join(INITRD_MODULES) + "\n")
    kernel, _ = _kernel_files(rootfs)
    version = kernel.name.removeprefix("vmlinuz-")
    _run(["chroot", str(rootfs), "update-initramfs", "-u", "-k", version], log)
    # Leave nothing of the build host behind.
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for f in (rootfs / cache).glob("*"):
            if f.is_file():
                f.unlink()
