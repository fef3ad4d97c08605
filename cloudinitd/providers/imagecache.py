"""Images the user saved or staged into this machine's image cache (local and qemu clouds).

Layout, beside the built-in base images of providers/local/image.py and
providers/qemu/image.py:

    <cache>/saved/                0700, root's
    <cache>/saved/<kind>/         0700, root's (kind: local | qemu)
    <cache>/saved/<kind>/<dir>/   one image; local: `NAME-id100000/rootfs/` (owned as the
                                  id-shifted base images are), qemu: `NAME/disk.qcow2`,
                                  `vmlinuz`, `initrd.img`
    <cache>/saved/<kind>/<dir>/image.json   name, size, created, source: written last,
                                  so an image without it is half made and never used
    <cache>/saved/<kind>/.work-*  an image being made; renamed into place when whole

Image names come from the command line and from plans: they are checked
(one path component, bounded) before they name anything on disk, and every
level of the cache is verified to be root's alone before it is used, since
its files become instances' disks.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from cloudinitd.errors import ProviderError, UsageError
from cloudinitd.host import locks, procs
from cloudinitd.host.files import write_private

SAVED = "saved"
META = "image.json"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
META_MAX = 64 << 10


def check_private(path: Path, owner: int = 0, follow: bool = False) -> None:
    """Refuse a cache entry that someone other than `owner` controls.

    Raises ProviderError when `path` is not owned by `owner` or is writable
    by its group or by others, or (unless `follow`) is a symlink.
    """
    try:
        st = path.stat() if follow else path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise ProviderError(f"image cache {path} is a symlink; refusing to use it")
    if st.st_uid != owner or st.st_mode & 0o022:
        raise ProviderError(
            f"image cache {path} is owned by uid {st.st_uid} with mode "
            f"{st.st_mode & 0o7777:04o}; refusing to use it (it must be owned by uid "
            f"{owner} and not group- or world-writable: remove it, or fix it with "
            f"chown {owner}:{owner} and chmod go-w)"
        )


def check_name(name: str, builtin: Collection[str] = ()) -> str:
    """An image name that is one plain path component (exit 2 otherwise)."""
    if not NAME.match(name) or ".." in name:
        raise UsageError(f"image name {name[:80]!r}: use 1 to 64 letters, digits and . _ - "
                         "(starting with a letter or digit; no '/' or '..')")
    if name in builtin:
        raise UsageError(f"image name {name!r} is a built-in image; choose another name")
    return name


def kind_dir(cache: Path, kind: str, create: bool = False) -> Path:
    """<cache>/saved/<kind>, verified (and made 0700 when `create`)."""
    folder = cache / SAVED / kind
    if create:
        for level in (cache, cache / SAVED, folder):
            if not level.exists():
                level.mkdir(mode=0o700, exist_ok=True)
                level.chmod(0o700)
    check_private(cache, follow=True)
    check_private(cache / SAVED)
    check_private(folder)
    return folder


def read_meta(image_dir: Path) -> dict[str, Any] | None:
    """image.json of a whole image (root's, small), else None."""
    path = image_dir / META
    try:
        check_private(image_dir)
        check_private(path)
        if path.lstat().st_size > META_MAX:
            return None
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_meta(image_dir: Path, meta: dict[str, Any]) -> None:
    write_private(image_dir / META, json.dumps(meta, indent=1, sort_keys=True))


def images(cache: Path, kind: str) -> list[tuple[Path, dict[str, Any]]]:
    """(folder, meta) of every whole saved image of `kind`, newest first."""
    folder = cache / SAVED / kind
    if not folder.is_dir():
        return []
    kind_dir(cache, kind)
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.is_symlink() or not entry.is_dir():
            continue
        meta = read_meta(entry)
        if meta and isinstance(meta.get("name"), str) and NAME.match(meta["name"]):
            found.append((entry, meta))
    return sorted(found, key=lambda item: item[1].get("created") or 0, reverse=True)


def find(cache: Path, kind: str, name: str) -> Path | None:
    for folder, meta in images(cache, kind):
        if meta["name"] == name:
            return folder
    return None


def row(meta: dict[str, Any], folder: Path) -> dict[str, Any]:
    """What `image list` shows of a saved image."""
    created = meta.get("created")
    return {
        "name": meta["name"],
        "image_id": meta["name"],
        "state": "available",
        "size": meta.get("size"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)) if created else None,
        "source": meta.get("source"),
        "format": meta.get("format"),
        "builtin": False,
        "path": str(folder),
    }


@contextlib.contextmanager
def lock(cache: Path, kind: str) -> Iterator[None]:
    """One maker or remover of saved images of a kind at a time."""
    with locks.exclusive(kind_dir(cache, kind, create=True) / ".lock"):
        yield


@contextlib.contextmanager
def making(cache: Path, kind: str, name: str, final_name: str) -> Iterator[Path]:
    """A private work folder that becomes <kind>/<final_name> when the block ends well.

    The caller writes the image into it (image.json last); on any failure,
    Ctrl-C included, the work folder goes and nothing named `name` appears.
    """
    folder = kind_dir(cache, kind, create=True)
    work = folder / f".work-{secrets.token_hex(4)}"
    work.mkdir(mode=0o700)
    try:
        yield work
        with lock(cache, kind):
            if find(cache, kind, name) is not None or (folder / final_name).exists():
                raise UsageError(f"an image named {name!r} exists already "
                                 "(`cloudinitd image delete` it first)")
            work.rename(folder / final_name)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def remove_or_park(folder: Path, in_use: bool = False) -> None:
    """Free the image's name at once (rename), then delete its files unless still in use.

    An image in use (the lower layer of a mounted overlay, a running VM's
    backing file) is parked as `.gone-*` and deleted by a later sweep.
    """
    gone = folder.parent / f".gone-{secrets.token_hex(4)}"
    folder.rename(gone)
    if not in_use:
        shutil.rmtree(gone, ignore_errors=True)


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def tree_size(root: Path) -> int:
    """Bytes used below `root`, links never followed."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                total += st.st_blocks * 512 if stat.S_ISREG(st.st_mode) else 0
    return total


def mounted_below(folder: Path) -> list[str]:
    """Mounts anywhere on this machine that use a path under `folder` (overlay layers)."""
    needle = str(folder.resolve()) + "/"
    found = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as fh:
        for line in fh:
            if needle in line or line.split(" ")[4].startswith(needle):
                found.append(line.split(" ")[4])
    return found


def opened_below(folder: Path) -> list[int]:
    """Pids of processes on this machine holding a file under `folder` open (a VM's disk)."""
    return procs.holding_open(str(folder.resolve()) + "/")


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def require_space(path: Path, needed: int, what: str) -> None:
    """Refuse to start a copy the cache's file system cannot hold (with 1 GiB to spare)."""
    spare = 1 << 30
    free = free_bytes(path)
    if free < needed + spare:
        raise ProviderError(f"{what}: needs about {needed >> 20} MiB in {path}, which has "
                            f"{free >> 20} MiB free (keeping 1 GiB spare)")
