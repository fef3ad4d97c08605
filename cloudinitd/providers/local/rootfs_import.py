"""`image stage FILE --cloud local`: a root filesystem tarball, checked, into the image cache.

The file is untrusted. Before anything is unpacked, the whole archive is
read once (Python's tarfile, streaming) and refused unless: its format is a
tar (plain, gzip, xz or bzip2, told by its first bytes, never by its name),
it is bounded (file size, unpacked size, member count), every name stays
inside (no absolute names, no `..`, no name below a symlink of the archive,
no hard link out), every owner fits the containers' id map, and it looks
like a root filesystem (/etc and an init). Then GNU tar unpacks it into a
private work folder, the owners are shifted into the user namespace as for
the built-in base, and the folder becomes the image (imagecache.making).
"""

from __future__ import annotations

import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, Any

from cloudinitd.errors import ProviderError, UsageError
from cloudinitd.providers import imagecache
from cloudinitd.providers.local import image, snapshot

MAX_FILE = 16 << 30
MAX_UNPACKED = 32 << 30
MAX_MEMBERS = 2_000_000
INITS = ("sbin/init", "lib/systemd/systemd", "usr/lib/systemd/systemd", "usr/sbin/init")
_MAGIC = (
    (b"\x1f\x8b", "gz"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bz2"),
)


def tar_format(path: Path) -> str:
    """'gz', 'xz', 'bz2' or '' (plain tar), from the first bytes; UsageError otherwise."""
    with path.open("rb") as f:
        head = f.read(512)
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head[257:262] == b"ustar":
        return ""
    if head.startswith(b"QFI\xfb"):
        raise UsageError(f"{path}: a qcow2 disk; local clouds take a root filesystem tarball "
                         "(.tar, .tar.gz, .tar.xz); disks are for qemu clouds")
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        raise UsageError(f"{path}: zstd-compressed; use a plain, gzip or xz tarball")
    raise UsageError(f"{path}: not a tar archive (local clouds take a root filesystem "
                     "tarball: .tar, .tar.gz, .tar.xz)")


class _Counting:
    """A read-only file that reports each chunk read (the progress bar) as it goes."""

    def __init__(self, f: IO[bytes], sent: Callable[[int], None]):
        self.f, self.sent = f, sent

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.sent(len(data))
        return data


def _clean(name: str) -> PurePosixPath | None:
    """The member name relative to the root, or None when it is the root itself."""
    path = PurePosixPath(name)
    parts = [p for p in path.parts if p not in (".", "")]
    if path.is_absolute() or ".." in parts:
        raise UsageError(f"archive member {name[:200]!r} leaves the root filesystem")
    return PurePosixPath(*parts) if parts else None


def scan(path: Path, fmt: str, sent: Callable[[int], None],
         label: Path | None = None) -> dict[str, Any]:
    """Read the whole archive once and refuse anything unsafe or unbounded.

    `label` is the name shown in errors (the user's file, when `path` is its copy).
    """
    shown = label or path
    links: set[PurePosixPath] = set()
    seen: set[str] = set()
    members = unpacked = 0
    try:
        with path.open("rb") as raw, tarfile.open(fileobj=_Counting(raw, sent),
                                                   mode=f"r|{fmt}") as tar:
            for member in tar:
                members += 1
                unpacked += max(member.size, 0)
                if members > MAX_MEMBERS or unpacked > MAX_UNPACKED:
                    raise UsageError(f"{shown}: more than {MAX_MEMBERS} files or "
                                     f"{MAX_UNPACKED >> 30} GiB unpacked; refused")
                rel = _clean(member.name)
                if rel is None:
                    continue
                below = [p for p in rel.parents if p in links]
                if below:
                    raise UsageError(f"archive member {member.name[:200]!r} is below the "
                                     f"symlink {below[0]} of the archive; refused")
                if member.islnk():  # link(2) would follow a symlink on the target's way
                    target = _clean(member.linkname)
                    if target is None or any(p in links for p in (target, *target.parents)):
                        raise UsageError(f"archive member {member.name[:200]!r} is a hard "
                                         "link through a symlink of the archive; refused")
                if member.issym():
                    links.add(rel)
                if member.uid >= image.ID_COUNT or member.gid >= image.ID_COUNT:
                    raise UsageError(f"archive member {member.name[:200]!r} is owned by "
                                     f"{member.uid}:{member.gid}, outside the containers' "
                                     f"id map (0..{image.ID_COUNT - 1})")
                seen.add(str(rel))
    except tarfile.TarError as exc:
        raise UsageError(f"{shown}: not a readable tar archive ({exc})") from None
    if "etc" not in seen or not any(i in seen for i in INITS):
        raise UsageError(f"{shown}: not a root filesystem (no /etc or no init: "
                         f"{', '.join('/' + i for i in INITS)})")
    return {"members": members, "unpacked": unpacked}


def _copy_bounded(path: Path, copy: Path) -> None:
    """Copy the user's file into the private work folder, at most MAX_FILE bytes."""
    with path.open("rb") as src, copy.open("xb") as dst:
        left = MAX_FILE
        while chunk := src.read(1 << 20):
            left -= len(chunk)
            if left < 0:
                raise UsageError(f"{path}: grew past {MAX_FILE >> 30} GiB while being read")
            dst.write(chunk)


def import_tarball(path: Path, name: str, cache: Path, sent: Callable[[int], None],
                   say: Callable[[str], None]) -> dict[str, Any]:
    """Check, unpack and id-shift a rootfs tarball into the cache as local image `name`."""
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0 or size > MAX_FILE:
        raise UsageError(f"{path}: {size} bytes; an image file must be 1 byte to "
                         f"{MAX_FILE >> 30} GiB")
    fmt = tar_format(path)
    started = time.monotonic()
    final = f"{name}-id{image.ID_BASE}"
    with imagecache.making(cache, "local", name, final) as work:
        # Check and unpack one private copy: the user's file could be replaced
        # between the check and the unpack, and what is unpacked must be what was checked.
        source = work / "source.tar"
        _copy_bounded(path, source)
        facts = scan(source, fmt, sent, label=path)
        imagecache.require_space(work.parent, facts["unpacked"], f"staging {path.name}")
        say(f"checked {facts['members']} files ({facts['unpacked'] >> 20} MiB unpacked); "
            "unpacking")
        root = work / "rootfs"
        root.mkdir(mode=0o755)
        proc = subprocess.run(
            ["tar", "-C", str(root), "--numeric-owner", *snapshot.TAR_XATTRS, "-xpf",
             str(source)],
            capture_output=True, text=True,
        )
        source.unlink()
        if proc.returncode != 0:
            raise ProviderError(f"unpacking {path} failed: {proc.stderr.strip()[-400:]}")
        say("shifting owners into the containers' id map")
        image.shift_ids(root)
        (work / "stamp").write_text(snapshot.STAMP + "\n")
        record = {
            "name": name, "kind": "local", "format": f"tar{'.' + fmt if fmt else ''}",
            "created": time.time(), "size": imagecache.tree_size(root),
            "source": f"staged {path.name}", "idmap": f"{image.ID_BASE}:{image.ID_COUNT}",
        }
        imagecache.write_meta(work, record)
    kind_dir = imagecache.kind_dir(cache, "local")
    return {**imagecache.row(record, kind_dir / final), "file_size": size,
            "seconds": round(time.monotonic() - started, 1)}
