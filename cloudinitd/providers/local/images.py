"""Image hooks of the local provider: the built-in base images and the ones saved or staged.

`image: NAME` on a local cloud is a built-in base (image.py, built with
debootstrap) or an image of the cache's `saved/local/` folder (imagecache.py):
an instance's root filesystem saved by `image save` (snapshot.py) or a rootfs
tarball imported by `image stage` (rootfs_import.py). Both are kept unpacked
with their owners shifted into the containers' user namespace, so either is
the lower layer of an unprivileged container as the built-in base is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloudinitd.errors import ProviderError, UsageError
from cloudinitd.providers import imagecache
from cloudinitd.providers.base import SaveRequest, Say, say_nothing
from cloudinitd.providers.local import image, instance, snapshot
from cloudinitd.providers.local.image import ID_BASE, check_private

KIND = "local"



def saved_rootfs(name: str) -> Path | None:
    """The verified lower layer of saved image `name`, or None when there is none."""
    folder = imagecache.find(image.cache_dir(), KIND, name)
    if folder is None:
        return None
    try:
        stamp = (folder / "stamp").read_text().strip()
    except OSError:
        stamp = ""
    if stamp != snapshot.STAMP:
        raise ProviderError(f"local image {name!r} ({folder}) was made for another id map "
                            f"({stamp or 'none'}); save or stage it again")
    check_private(folder / "stamp")
    check_private(folder / "rootfs", ID_BASE)
    return folder / "rootfs"


def lower_for(name: str | None, progress: Say) -> tuple[str, Path]:
    """(image name, lower layer) for a plan's `image:`: built-in (built on first use) or saved."""
    if name is None or name in image.IMAGES:
        spec = image.image_spec(name)
        return spec.name, image.ensure_image(spec.name, progress)
    imagecache.check_name(name)
    found = saved_rootfs(name)
    if found is None:
        known = sorted(image.IMAGES) + [m["name"] for _, m in
                                        imagecache.images(image.cache_dir(), KIND)]
        raise ProviderError(f"unknown local image {name!r} (known: {', '.join(known)}; "
                            "see `cloudinitd image list --cloud local`)")
    return name, found


def sweep_removed() -> None:
    """Delete images removed with --force once no instance uses them any more."""
    folder = image.cache_dir() / imagecache.SAVED / KIND
    if not folder.is_dir():
        return
    for gone in folder.glob(".gone-*"):
        if not imagecache.mounted_below(gone):
            imagecache.remove(gone)


class LocalImageHooks:
    """The provider's image hooks (providers/base.py) for local containers."""

    lxcpath: Path

    def check_image_name(self, name: str) -> str:
        return imagecache.check_name(name, image.IMAGES)

    def build_image(self, name: str, say: Say = say_nothing) -> Path:
        return image.ensure_image(name, progress=say)

    def list_images(self) -> list[dict[str, Any]]:
        cache = image.cache_dir()
        rows = []
        for folder, meta in imagecache.images(cache, KIND):
            rows.append(imagecache.row(meta, folder))
        for name, spec in sorted(image.IMAGES.items()):
            tarball = image.tarball_path(spec)
            built = tarball.exists()
            rows.append({
                "name": name, "image_id": name,
                "state": "available" if built else "unbuilt",  # built on first use
                "size": tarball.stat().st_size if built else None,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                         time.gmtime(tarball.stat().st_mtime)) if built else None,
                "source": f"built-in ({spec.suite}, revision {image.IMAGE_REVISION})",
                "format": "rootfs", "builtin": True, "path": str(tarball),
            })
        return rows

    def has_image(self, name: str) -> bool:
        return name in image.IMAGES or imagecache.find(image.cache_dir(), KIND, name) is not None

    def save_image(self, request: SaveRequest, say: Say = say_nothing) -> dict[str, Any]:
        self.check_image_name(request.name)
        if self.has_image(request.name):
            raise UsageError(f"an image named {request.name!r} exists already on local clouds "
                             "(`cloudinitd image delete` it first)")
        sweep_removed()
        return snapshot.save(self.lxcpath, request.instance_id, request.name,
                             image.cache_dir(), source=request.source, stop=request.stop, say=say)

    def import_image(self, path: Path, name: str, sent: Callable[[int], None],
                     say: Say = say_nothing) -> dict[str, Any]:
        from cloudinitd.providers.local import rootfs_import

        self.check_image_name(name)
        if self.has_image(name):
            raise UsageError(f"an image named {name!r} exists already on local clouds "
                             "(`cloudinitd image delete` it first)")
        return rootfs_import.import_tarball(path, name, image.cache_dir(), sent, say)

    def delete_image(self, name: str, force: bool = False) -> dict[str, Any]:
        if name in image.IMAGES:
            raise UsageError(f"{name!r} is a built-in image: it is not deleted (it is rebuilt "
                             "by `cloudinitd image build` and on first use)")
        self.check_image_name(name)
        cache = image.cache_dir()
        with imagecache.lock(cache, KIND):
            folder = imagecache.find(cache, KIND, name)
            if folder is None:
                raise UsageError(f"no local image named {name!r} (see `cloudinitd image list "
                                 "--cloud local`)")
            users = self._users(folder)
            if users and not force:
                raise UsageError(f"local image {name!r} is in use by {', '.join(users)}; "
                                 "terminate them first, or --force (its files go once they do)")
            imagecache.remove_or_park(folder, in_use=bool(users))
        sweep_removed()
        return {"name": name, "deleted": True, "in_use": users, "path": str(folder)}

    def _users(self, folder: Path) -> list[str]:
        """Instances whose lower layer is this image: this home's, and mounts anywhere."""
        rootfs = str(folder / "rootfs")
        users = [n for n, m in instance.all_sidecars(self.lxcpath).items()
                 if m.get("lower") == rootfs and (self.lxcpath / n).exists()]
        mounts = [m for m in imagecache.mounted_below(folder)
                  if not any(m.startswith(str(self.lxcpath / n) + os.sep) for n in users)]
        return users + [f"the mount {m}" for m in mounts]
