"""The SFTP way of running a step: for steps with `files:` bundles.

A step without bundles is one exec channel (script.oneshot_command). A
bundle can be many files and folders, each with its own mode, so those
steps still make the private folder, upload the env file, the script and
the bundle over SFTP, and read the export file back the same way.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cloudinitd.errors import RemoteError
from cloudinitd.plan.bundles import MAX_BUNDLE_BYTES, BundleError, walk_bundle
from cloudinitd.plan.limits import FileRefused, open_checked
from cloudinitd.remote.script import MAX_EXPORT, parse_export
from cloudinitd.remote.session import Session, SshTarget

REMOTE_ROOT = ".cloudinitd-remote"


def private_dir(sess: Session, run: str, service: str, index: int) -> str:
    """Absolute path of the step directory, created 0700 level by level if missing.

    `run` is the folder name (remote_run_dir), not always the bare run name.
    """
    sftp = sess.sftp()
    leaf = f"{sess.home.rstrip('/')}/{REMOTE_ROOT}/{run}/{service}-{index}"
    try:
        if (sftp.stat(leaf).st_mode or 0) & 0o040000:
            return leaf  # the usual case after the first step: one round trip
    except FileNotFoundError:
        pass
    path = sess.home.rstrip("/")
    for part in (REMOTE_ROOT, run, f"{service}-{index}"):
        path = f"{path}/{part}"
        try:
            sftp.mkdir(path, 0o700)
        except OSError:
            # Already there (or a real problem, which stat reports).
            st = sftp.stat(path)
            if not (st.st_mode or 0) & 0o040000:
                raise NotADirectoryError(errno.ENOTDIR, f"{path} is not a directory") from None
    return path


def upload(sess: Session, path: str, text: str) -> None:
    sftp = sess.sftp()
    sftp.putfo(io.BytesIO(text.encode()), path, confirm=False)
    sftp.chmod(path, 0o600)


def upload_files(sess: Session, workdir: str, files: Sequence[Path], service: str,
                 step: str) -> None:
    """A step's `files:` into its private folder, beside the script (owner-only modes)."""
    if not files:
        return
    sftp = sess.sftp()
    try:
        for entry in files:
            # Walked again here: a symlink planted after load is refused too.
            for path, rel, is_dir in walk_bundle(Path(entry)):
                remote = f"{workdir}/{rel}"
                if is_dir:
                    with contextlib.suppress(OSError):  # there from an earlier step
                        sftp.mkdir(remote, 0o700)
                    continue
                # Checked again on the opened file: swapped for a FIFO or /dev/zero
                # since the walk, it is refused instead of blocking or never ending.
                try:
                    with open_checked(path, MAX_BUNDLE_BYTES) as f:
                        sftp.putfo(f, remote, confirm=False)  # type: ignore[arg-type]
                        mode = os.fstat(f.fileno()).st_mode
                except FileRefused as e:
                    raise RemoteError(service, step, f"uploading files: {rel} {e.problem}") \
                        from None
                sftp.chmod(remote, (mode & 0o700) | 0o600)
    except (BundleError, OSError) as e:
        raise RemoteError(service, step, f"uploading files: {e}") from None


def read_export(
    sess: Session, target: SshTarget, workdir: str, service: str, step: str
) -> dict[str, Any]:
    path = f"{workdir}/export"
    where = f"{target.label}:{path}"
    try:
        with sess.sftp().open(path, "rb") as f:
            raw = f.read(MAX_EXPORT + 1)
    except FileNotFoundError:
        return {}
    except PermissionError:
        # Written by root through sudo under a umask of 077: read it the same way.
        res = sess.conn.run(
            f"sudo -n cat {shlex.quote(path)}", hide=True, warn=True, in_stream=False, timeout=30
        )
        if res.exited != 0:
            raise RemoteError(
                service, step, f"cannot read export file {where}: {res.stderr.strip()}"
            ) from None
        raw = res.stdout.encode()
    if len(raw) > MAX_EXPORT:
        raise RemoteError(service, step, f"export file {where} is larger than {MAX_EXPORT} bytes")
    return parse_export_bytes(raw, where, service, step)


def parse_export_bytes(raw: bytes, where: str, service: str, step: str) -> dict[str, Any]:
    try:
        return parse_export(raw.decode("utf-8"), where)
    except UnicodeDecodeError:
        raise RemoteError(service, step, f"malformed export file {where}: not UTF-8") from None
    except ValueError as e:
        raise RemoteError(service, step, str(e)) from None
