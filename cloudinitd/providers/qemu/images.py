"""Image hooks of the qemu provider: the built-in base images and the ones saved or staged.

`image: NAME` on a qemu cloud is a built-in base (image.py) or an image of
the cache's `saved/qemu/` folder (imagecache.py): a standalone qcow2 with
the kernel and initrd QEMU boots it with (snapshot.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloudinitd.errors import ProviderError, UsageError
from cloudinitd.providers import imagecache
from cloudinitd.providers.base import SaveRequest, Say, say_nothing
from cloudinitd.providers.qemu import image as image_mod
from cloudinitd.providers.qemu import snapshot, vm

KIND = "qemu"
DEFAULT_IMAGE = "debian-12"



def sweep_removed(cache: Path) -> None:
    """Delete images removed with --force once no VM holds their disk open."""
    folder = cache / imagecache.SAVED / KIND
    if folder.is_dir():
        for gone in folder.glob(".gone-*"):
            if not imagecache.opened_below(gone):
                imagecache.remove(gone)


class QemuImageHooks:
    """The provider's image hooks (providers/base.py) for QEMU VMs."""

    cache: Path
    _files: Callable[[str], vm.VmFiles]  # QemuProvider's: the VM's folder

    def resolve_image(self, name: str | None) -> image_mod.BaseImage:
        """A plan's `image:`: a built-in base (built on first use) or a saved image, verified."""
        name = name or DEFAULT_IMAGE
        if name in image_mod.IMAGE_NAMES:
            return image_mod.ensure_image(self.cache, name)
        imagecache.check_name(name)
        folder = imagecache.find(self.cache, KIND, name)
        if folder is None:
            known = sorted(image_mod.IMAGE_NAMES) + [m["name"] for _, m in
                                                     imagecache.images(self.cache, KIND)]
            raise ProviderError(f"qemu provider: unknown image {name!r} (known: "
                                f"{', '.join(known)}; see `cloudinitd image list --cloud qemu`)")
        base = image_mod.BaseImage(folder / "disk.qcow2", folder / "vmlinuz",
                                   folder / "initrd.img")
        for path in (base.disk, base.kernel, base.initrd):
            imagecache.check_private(path)
        if not base.exists():
            raise ProviderError(f"qemu image {name!r} ({folder}) is incomplete; delete it")
        return base

    def build_image(self, name: str, say: Say = say_nothing) -> Path:
        return image_mod.ensure_image(self.cache, name, progress=say).disk

    def check_image_name(self, name: str) -> str:
        return imagecache.check_name(name, image_mod.IMAGE_NAMES)

    def list_images(self) -> list[dict[str, Any]]:
        rows = [imagecache.row(meta, folder) for folder, meta in imagecache.images(self.cache, KIND)]
        base = image_mod.base_image(self.cache, DEFAULT_IMAGE)
        built = base.exists()
        aliases = sorted(set(image_mod.IMAGE_NAMES) - {DEFAULT_IMAGE})
        for name in [DEFAULT_IMAGE]:  # one base; the other names are aliases of it
            rows.append({
                "name": name, "image_id": name, "aliases": aliases,
                "state": "available" if built else "unbuilt",  # built on first use
                "size": base.disk.stat().st_size if built else None,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                         time.gmtime(base.disk.stat().st_mtime)) if built else None,
                "source": f"built-in (debootstrap {image_mod.IMAGE_NAMES[name]})",
                "format": "qcow2", "builtin": True, "path": str(base.disk),
            })
        return rows

    def has_image(self, name: str) -> bool:
        return (name in image_mod.IMAGE_NAMES
                or imagecache.find(self.cache, KIND, name) is not None)

    def _refuse_taken(self, name: str) -> None:
        self.check_image_name(name)
        if self.has_image(name):
            raise UsageError(f"an image named {name!r} exists already on qemu clouds "
                             "(`cloudinitd image delete` it first)")

    def save_image(self, request: SaveRequest, say: Say = say_nothing) -> dict[str, Any]:
        self._refuse_taken(request.name)
        sweep_removed(self.cache)
        return snapshot.save(self._files(request.instance_id), request.name, self.cache,
                             source=request.source, stop=request.stop, say=say)

    def import_image(self, path: Path, name: str, sent: Callable[[int], None],
                     say: Say = say_nothing) -> dict[str, Any]:
        self._refuse_taken(name)
        base = image_mod.ensure_image(self.cache, DEFAULT_IMAGE, progress=say)
        return snapshot.import_disk(path, name, self.cache, base.kernel, base.initrd, sent, say)

    def delete_image(self, name: str, force: bool = False) -> dict[str, Any]:
        if name in image_mod.IMAGE_NAMES:
            raise UsageError(f"{name!r} is a built-in image: it is not deleted (it is rebuilt "
                             "by `cloudinitd image build --provider qemu` and on first use)")
        self.check_image_name(name)
        with imagecache.lock(self.cache, KIND):
            folder = imagecache.find(self.cache, KIND, name)
            if folder is None:
                raise UsageError(f"no qemu image named {name!r} (see `cloudinitd image list "
                                 "--cloud qemu`)")
            users = [f"pid {p}" for p in imagecache.opened_below(folder)]
            if users and not force:
                raise UsageError(f"qemu image {name!r} is the disk of running VMs "
                                 f"({', '.join(users)}); terminate them first, or --force "
                                 "(its files go once they stop)")
            imagecache.remove_or_park(folder, in_use=bool(users))
        sweep_removed(self.cache)
        return {"name": name, "deleted": True, "in_use": users, "path": str(folder)}
