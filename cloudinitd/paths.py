"""Where things live: the user's state folder and the shipped plans / bootlevels.

The shipped folders sit at the top of a checkout (where users look for them)
and are copied into the package as `cloudinitd/data/` by setup.py, so an
installed cloudinitd finds them from any directory.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from cloudinitd.errors import UsageError
from cloudinitd.settings import settings

_PACKAGE = Path(__file__).resolve().parent
SHIPPED = ("plans", "bootlevels")


def cloudinitd_home() -> Path:
    """$CLOUDINITD_HOME, default ~/.cloudinitd (not created here)."""
    return settings().home_path


def shipped_dir(name: str) -> Path:
    """The shipped `plans` or `bootlevels` folder: the checkout's, else the installed copy."""
    if name not in SHIPPED:
        raise ValueError(f"no shipped folder named {name!r}")
    checkout = _PACKAGE.parent / name
    # A checkout is recognised by its pyproject next to the folder, so that a
    # stray `plans/` beside an installed package (site-packages) is not taken.
    if checkout.is_dir() and (_PACKAGE.parent / "pyproject.toml").is_file():
        return checkout
    return _PACKAGE / "data" / name


@functools.cache
def _shipped_resolved(name: str) -> Path:
    """shipped_dir(name), resolved once per process: a plan's load names every script
    file, and resolving the shipped folders each time was a third of loading a plan."""
    return shipped_dir(name).resolve()


def find_plan(arg: str | os.PathLike[str]) -> Path:
    """A plan file, a folder holding plan.yml, or a shipped plan by name (`sshfs-vm`)."""
    path = Path(arg).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for candidate in ("plan.yml", "plan.yaml"):
            if (path / candidate).is_file():
                return path / candidate
        raise UsageError(f"{path}: folder has no plan.yml")
    text = str(arg)
    if "/" not in text and os.sep not in text:
        shipped = shipped_dir("plans") / text
        for candidate in ("plan.yml", "plan.yaml"):
            if (shipped / candidate).is_file():
                return shipped / candidate
    known = ", ".join(shipped_plan_names()) or "none"
    raise UsageError(
        f"no plan {text!r}: not a file, a folder with plan.yml, or a shipped plan ({known})"
    )


def shipped_plan_names() -> list[str]:
    root = shipped_dir("plans")
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "plan.yml").is_file())


def display_path(path: str | os.PathLike[str]) -> str:
    """How a plan or script file is named in messages.

    Shipped files show as `bootlevels/...` or `plans/...` wherever they are
    installed; others relative to the current folder when below it.
    """
    try:
        cwd = os.getcwd()
    except OSError:  # the current folder was removed: nothing is below it
        cwd = ""
    return _display(os.fspath(path), cwd)


@functools.lru_cache(maxsize=1024)
def _display(path: str, cwd: str) -> str:
    """display_path, once per (path, current folder): loading a plan names each script
    file several times (its load, every template scan), and each name resolved the
    path again (~150 resolves for 50 services)."""
    p = Path(path)
    try:
        resolved = Path(cwd, p).resolve() if cwd else p.resolve()
    except OSError:
        return str(p)
    for name in SHIPPED:
        try:
            return f"{name}/{resolved.relative_to(_shipped_resolved(name)).as_posix()}"
        except ValueError:
            pass
    if not cwd:
        return str(resolved)
    try:
        return resolved.relative_to(Path(cwd).resolve()).as_posix()
    except (ValueError, OSError):
        return str(resolved)


ORIGINAL_SUFFIX = ".conf"


def is_original_plan(arg: str) -> bool:
    """A plan argument naming an original cloudinit.d top-level file (TOP.conf).

    Here, not in cloudinitd.importer, so that telling a TOP.conf from a plan does not
    import the importer (~20 ms) for every YAML plan."""
    return arg.endswith(ORIGINAL_SUFFIX) and Path(arg).is_file()
