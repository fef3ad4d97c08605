"""A saved VM disk (raw ext4) edited offline: its keys and machine id taken out.

Nothing here mounts the disk or reaches it through this machine's paths:
e2fsck replays the journal (the VM was paused, not shut down), then debugfs
reads and edits the file system inside the file. debugfs resolves the
guest's links inside that file system only (an absolute link starts at its
root), so `DIR/.` reaches a folder the way the guest's sshd would.

Every name passed to debugfs is quoted by its own rule (`"` doubled inside
double quotes): a home or an AuthorizedKeysFile name with spaces or quotes
is one argument, never a second command. Names cannot hold a newline (they
come from lines of /etc/passwd and sshd_config).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path, PurePosixPath

from cloudinitd.errors import ProviderError
from cloudinitd.providers import loginkeys
from cloudinitd.providers.base import Say


def forget_identity(raw: Path, say: Say) -> loginkeys.KeyFiles:
    """Take every account's login keys and the machine id out of the disk `raw`.

    cloud-init adds a new instance's keys to an authorized_keys it finds, so
    the source run's key (and any key a boot script added) would still open
    instances of the image. Host keys need nothing: cloud-init deletes them
    on a new instance (seed.py: ssh_deletekeys). Returns the key files
    removed (with whose keys they held); a key file still there after the
    edit is an error, not an image.
    """
    fsck = subprocess.run(["e2fsck", "-p", str(raw)], capture_output=True, text=True)
    if fsck.returncode >= 4:
        raise ProviderError(f"e2fsck of the saved disk: {fsck.stdout.strip()[-300:]}")
    keys = _key_files(raw)
    before = _present(raw, list(keys.files))
    script = "".join(f"rm {_quoted(_in_dir(n))}\n" for n in keys.files)
    with tempfile.TemporaryDirectory(prefix="cid-debugfs-") as tmp:
        empty = Path(tmp) / "empty"
        empty.write_bytes(b"")
        script += (f"rm /etc/machine-id\nwrite {_quoted(str(empty))} /etc/machine-id\n"
                   "sif /etc/machine-id mode 0100444\n")
        _debugfs(raw, script, write=True)
    left = _present(raw, before)
    if left:
        raise ProviderError(f"keys still in the saved disk after debugfs: {', '.join(left)}")
    say("removed the instance's authorised keys and machine id from the image")
    return loginkeys.KeyFiles({n: keys.files[n] for n in before}, keys.not_expanded)


def _key_files(raw: Path) -> loginkeys.KeyFiles:
    conf_dir = loginkeys.SSHD_CONFIG_DIR
    listed = _listing(raw, [conf_dir, loginkeys.HOMES])
    return loginkeys.in_image(
        lambda name: _cat(raw, name),
        [name for name, kind in listed[conf_dir].items() if kind != "dir"],
        [name for name, kind in listed[loginkeys.HOMES].items() if kind != "file"])


def _present(raw: Path, names: list[str]) -> list[str]:
    """Those of `names` (absolute) that are in the disk and not directories."""
    parents = sorted({str(PurePosixPath(n).parent) for n in names})
    listed = _listing(raw, parents)
    return [n for n in names
            if listed[str(PurePosixPath(n).parent)].get(PurePosixPath(n).name, "dir") != "dir"]


def _listing(raw: Path, folders: list[str]) -> dict[str, dict[str, str]]:
    """name -> "dir", "file" or "other" for each folder (empty when it is none).

    One debugfs run; its output has each command echoed before what it
    printed. The headers are taken in the order they were asked for, so a
    file named like a header only adds a name to the folder listed next.
    """
    commands = [f"ls -p {_quoted(f.rstrip('/') + '/.')}" for f in folders]
    out = _debugfs(raw, "".join(c + "\n" for c in commands))
    found: dict[str, dict[str, str]] = {f: {} for f in folders}
    at = -1
    for line in out.splitlines():
        if at + 1 < len(commands) and line == f"debugfs: {commands[at + 1]}":
            at += 1
            continue
        fields = line.split("/")
        if at < 0 or len(fields) != 8 or fields[5] in ("", ".", ".."):
            continue
        mode = fields[2][-6:-4]
        found[folders[at]][fields[5]] = {"04": "dir", "10": "file"}.get(mode, "other")
    return found


def _cat(raw: Path, name: str) -> str:
    proc = subprocess.run(["debugfs", "-R", f"cat {_quoted(name)}", str(raw)],
                          capture_output=True, text=True, errors="replace")
    return proc.stdout if proc.returncode == 0 else ""


def _debugfs(raw: Path, script: str, write: bool = False) -> str:
    with tempfile.NamedTemporaryFile("w", prefix="cid-debugfs-") as f:
        f.write(script)
        f.flush()
        proc = subprocess.run(["debugfs", *(["-w"] if write else []), "-f", f.name, str(raw)],
                              capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        raise ProviderError(f"debugfs on the saved disk: {proc.stderr.strip()[-300:]}")
    return proc.stdout


def _in_dir(name: str) -> str:
    """`name` with its folder reached as `DIR/.`: a link at DIR is followed (in the disk)."""
    path = PurePosixPath(name)
    return f"{path.parent}/./{path.name}" if path.parent != path else name


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
