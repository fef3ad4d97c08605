"""Files shipped with a step (`files:`): checked at load time.

A step may carry files or folders; they are uploaded into the step's
private folder, beside the script, which runs there (so it can `cd` into a
bundle). A symlink inside a bundle must point inside that bundle: one that
leads elsewhere (`/etc/shadow`, `~/.ssh`) would ship this machine's files,
so it is refused, as is an entry that is itself a symlink leaving the plan
folder. Sizes are bounded so a plan cannot make us upload a disk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

MAX_BUNDLE_BYTES = 64 * 1024 * 1024  # per step, all files together
MAX_BUNDLE_FILES = 5000


class BundleError(ValueError):
    """What is wrong with a bundle (the loader adds FILE:LINE)."""


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def walk_bundle(entry: Path) -> Iterator[tuple[Path, str, bool]]:
    """(local path, relative name, is_dir) of everything `entry` ships, parents first.

    Raises BundleError for a symlink that leaves the bundle (checked again at
    upload time, since files can change after load)."""
    root = os.path.realpath(entry)
    name = entry.name
    if entry.is_dir():
        yield entry, name, True
        for folder, dirs, files in os.walk(entry, followlinks=False):
            rel_dir = os.path.relpath(folder, entry)
            for d in sorted(dirs):
                full = os.path.join(folder, d)
                if os.path.islink(full):
                    if not _inside(os.path.realpath(full), root):
                        rel = os.path.normpath(os.path.join(name, rel_dir, d))
                        raise BundleError(f"symlink {rel} points outside the bundle")
                    continue  # a link to a folder inside: its files ship from there
                yield Path(full), os.path.normpath(os.path.join(name, rel_dir, d)), True
            for f in sorted(files):
                full = os.path.join(folder, f)
                rel = os.path.normpath(os.path.join(name, rel_dir, f))
                if os.path.islink(full) and not _inside(os.path.realpath(full), root):
                    raise BundleError(f"symlink {rel} points outside the bundle")
                if not os.path.isfile(full):
                    raise BundleError(f"{rel} is not a regular file")
                yield Path(full), rel, False
    elif entry.is_file():
        yield entry, name, False
    else:
        raise BundleError(f"{entry} is not a file or folder")


def check_bundle(entry: Path, plan_dir: Path) -> None:
    """Refuse a bundle that leaves the plan folder through a symlink or is too big."""
    if entry.is_symlink() and not _inside(os.path.realpath(entry),
                                          os.path.realpath(plan_dir)):
        raise BundleError(f"{entry.name} is a symlink pointing outside the plan folder")
    total = 0
    for count, (path, _rel, is_dir) in enumerate(walk_bundle(entry), 1):
        if not is_dir:
            total += path.stat().st_size
        if count > MAX_BUNDLE_FILES:
            raise BundleError(f"more than {MAX_BUNDLE_FILES} files")
        if total > MAX_BUNDLE_BYTES:
            raise BundleError(f"more than {MAX_BUNDLE_BYTES // (1024 * 1024)} MiB")
