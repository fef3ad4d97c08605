"""`image save` on a local instance: its root filesystem, copied into the image cache.

What is copied is the container's whole root filesystem as the container
sees it (the overlay of the id-shifted base image and the instance's own
layer), read from this machine's mount of that overlay while the container
is frozen (lxc-freeze), or shut down with `--stop`, so nothing changes
under the copy. The copy keeps the shifted owners (the saved image is
ready to be the lower layer of unprivileged containers, like the built-in
base) and is made by GNU tar, which stores the guest's symlinks as links
and never follows them, and stays on the one file system (`--one-file-system`).

Then the instance's identity is taken out of the copy, through openat2 (a
link the guest planted at one of these names is removed, never followed):
its SSH host key and authorised keys (a run's key must not open the next
run's instances), its machine id; and every account's login keys
(loginkeys: each account's authorized_keys and authorized_keys2, and the
files sshd's AuthorizedKeysFile names). Instances made from the image get
their own, as from the built-in base.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from cloudinitd.errors import ProviderError
from cloudinitd.providers import guestfs, imagecache, loginkeys
from cloudinitd.providers.base import Say
from cloudinitd.providers.local import image, instance, lxc, rootfs

CHUNK = 1 << 20
# Names of the instance's identity, removed from a saved image (the provider
# writes fresh ones into every instance it makes). Login keys: loginkeys.
IDENTITY = (
    "/etc/ssh/ssh_host_ed25519_key",
    "/etc/ssh/ssh_host_ed25519_key.pub",
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_rsa_key.pub",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_ecdsa_key.pub",
    "/etc/cloudinitd/authorized_keys",
    "/etc/cloudinitd/ssh_user",
    "/etc/apt/apt.conf.d/01cloudinitd-proxy",
    "/var/lib/dbus/machine-id",
)
TAR_XATTRS = ["--xattrs", "--xattrs-include=*"]
# A saved image's stamp: the id shift its files carry (instances need the same one).
STAMP = f"saved idmap={image.ID_BASE}:{image.ID_COUNT}"


def root_view(directory: Path) -> Path:
    """The instance's root filesystem as this machine sees it (its mounted overlay).

    The one place that knows where a running container's files are on this
    machine: a change of how instances store their layer changes only this.
    """
    if not rootfs.mounted(directory):
        raise ProviderError(f"local instance {directory.name}: its root filesystem is not "
                            "mounted (only a running instance can be saved)")
    return rootfs.path(directory)


@contextlib.contextmanager
def held_still(name: str, lxcpath: Path, stop: bool, say: Say) -> Iterator[None]:
    """Nothing in the container runs while the block copies: frozen, or shut down (`stop`)."""
    if stop:
        say(f"shutting {name} down (--stop)")
        lxc.stop(name, lxcpath, kill=False)
        yield
        return
    proc = subprocess.run(["lxc-freeze", "-n", name, "-P", str(lxcpath)], capture_output=True,
                          text=True, timeout=120)
    if proc.returncode != 0:
        raise ProviderError(f"lxc-freeze {name} failed: {proc.stderr.strip()[-300:]}")
    say(f"froze {name}")
    try:
        yield
    finally:
        subprocess.run(["lxc-unfreeze", "-n", name, "-P", str(lxcpath)], capture_output=True,
                       timeout=120)
        say(f"thawed {name}")


def copy_tree(source: Path, target: Path, estimate: int, limit: int, say: Say) -> int:
    """tar | tar from `source` to `target`, owners, modes and xattrs kept, links not followed.

    Counts the bytes that pass, says how far it got every quarter, and stops
    (ProviderError) past `limit` bytes.
    """
    target.mkdir(mode=0o700, exist_ok=True)
    # Files, not pipes, for the complaints: a full pipe nobody reads would stall tar.
    with tempfile.TemporaryFile() as read_log, tempfile.TemporaryFile() as write_log:
        return _copy(source, target, estimate, limit, say, read_log, write_log)


def _copy(source: Path, target: Path, estimate: int, limit: int, say: Say, read_log: IO[bytes],
          write_log: IO[bytes]) -> int:
    reader = subprocess.Popen(
        ["tar", "-C", str(source), "--numeric-owner", *TAR_XATTRS, "--one-file-system",
         "--sparse", "-cf", "-", "."],
        stdout=subprocess.PIPE, stderr=read_log,
    )
    writer = subprocess.Popen(
        ["tar", "-C", str(target), "--numeric-owner", *TAR_XATTRS, "-xpf", "-"],
        stdin=subprocess.PIPE, stderr=write_log,
    )
    assert reader.stdout is not None and writer.stdin is not None
    done, shown = 0, 0
    try:
        while chunk := reader.stdout.read(CHUNK):
            done += len(chunk)
            if done > limit:
                raise ProviderError(f"the copy passed {limit >> 20} MiB; stopped")
            writer.stdin.write(chunk)
            quarter = min(done * 4 // max(estimate, 1), 3)
            if quarter > shown:
                shown = quarter
                say(f"copied {done >> 20} MiB of about {estimate >> 20} MiB")
        writer.stdin.close()
        if reader.wait() != 0 or writer.wait() != 0:
            complaints = b""
            for log in (read_log, write_log):
                log.seek(0)
                complaints += log.read()[-400:]
            raise ProviderError(f"copying the root filesystem failed: "
                                f"{complaints.decode(errors='replace').strip()[-400:]}")
    finally:
        for proc in (reader, writer):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    say(f"copied {done >> 20} MiB")
    return done


def forget_identity(root: Path) -> tuple[list[str], loginkeys.KeyFiles]:
    """Remove the instance's ids and every account's login keys from the copy at `root`.

    Returns the identity names removed, and the key files removed (with
    whose keys they held) and the AuthorizedKeysFile names not expanded.
    The copy is ours alone now: its links are followed inside its root only
    (guestfs.RESOLVE_IN_COPY), as the guest's sshd would follow them.
    """
    removed = []
    with guestfs.opened_root(root) as fd:
        for name in IDENTITY:
            if guestfs.remove_file(fd, name):
                removed.append(name)
        keys = _key_files(fd)
        gone = {path: users for path, users in keys.files.items()
                if guestfs.remove_file(fd, path, guestfs.RESOLVE_IN_COPY)}
        # Empty: systemd makes a new one at each instance's first boot.
        guestfs.write_file(fd, "/etc/machine-id", b"", 0o444, instance.GUEST_ROOT)
    return removed, loginkeys.KeyFiles(gone, keys.not_expanded)


def _key_files(root_fd: int) -> loginkeys.KeyFiles:
    """The files sshd would read as someone's authorised keys in the copy."""
    def text(name: str) -> str:
        try:
            return guestfs.read_file(root_fd, name, resolve=guestfs.RESOLVE_IN_COPY).decode(
                errors="replace")
        except OSError:
            return ""

    return loginkeys.in_image(
        text, guestfs.list_dir(root_fd, loginkeys.SSHD_CONFIG_DIR, guestfs.RESOLVE_IN_COPY),
        guestfs.list_dir(root_fd, loginkeys.HOMES, guestfs.RESOLVE_IN_COPY))


def save(lxcpath: Path, container: str, name: str, cache: Path, *, source: str, stop: bool,
         say: Say) -> dict[str, Any]:
    """Copy a running container's root filesystem into the cache as local image `name`."""
    directory = lxcpath / container
    meta = instance.read_sidecar(directory)
    state = lxc.state(container, lxcpath)
    if meta is None or state not in ("RUNNING", "FROZEN"):
        raise ProviderError(f"local instance {container} is {state or 'gone'}; "
                            "only a running instance can be saved")
    root = root_view(directory)
    estimate = imagecache.tree_size(root)
    kind_dir = imagecache.kind_dir(cache, "local", create=True)
    imagecache.require_space(kind_dir, estimate, f"saving {container}")
    limit = imagecache.free_bytes(kind_dir) - (1 << 30)
    started = time.monotonic()
    final = f"{name}-id{image.ID_BASE}"
    with imagecache.making(cache, "local", name, final) as work:
        with held_still(container, lxcpath, stop, say):
            copied = copy_tree(root, work / "rootfs", estimate, limit, say)
        removed, keys = forget_identity(work / "rootfs")
        for line in loginkeys.report(keys):
            say(line)
        (work / "stamp").write_text(STAMP + "\n")
        record = {
            "name": name, "kind": "local", "format": "rootfs", "created": time.time(),
            "size": imagecache.tree_size(work / "rootfs"), "source": source,
            "base": meta.get("image"), "idmap": f"{image.ID_BASE}:{image.ID_COUNT}",
            "identity_removed": removed, "keys_removed": keys.files,
            "keys_not_expanded": keys.not_expanded,
        }
        imagecache.write_meta(work, record)
    say(f"saved {container} as local image {name} ({copied >> 20} MiB in "
        f"{time.monotonic() - started:.0f} s)")
    return {**imagecache.row(record, kind_dir / final), "keys_removed": keys.files,
            "keys_not_expanded": keys.not_expanded,
            "seconds": round(time.monotonic() - started, 1)}
