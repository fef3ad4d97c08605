"""The run-scoped home share: an sftp-only OpenSSH server exporting one folder (the home).

Plans such as `sshfs-vm` mount the home of the machine running cloudinitd
inside their VMs, as Nimbus's launch-vm mounted the user's home on hotel.
This machine may run no sshd at all (CI has none), and handing the user's
own agent or key to a VM would give it everything the user can do. So each
run that needs the home gets a dedicated sshd of its own:

- sftp only (`ForceCommand internal-sftp`): no shell, no tty, no forwarding;
- one user, authenticated only by a key made for this run (`restrict`ed);
- chrooted to a jail holding the shared folder and nothing else (see
  homeshare_jail.py), then running as the shared user, so a VM reaches that
  folder with that user's rights and no other file of this machine;
- read-only on request (`internal-sftp -R` and a read-only bind mount);
- its own host key, so the VM pins it (StrictHostKeyChecking=yes);
- listening only on the address the run's instances reach this machine at;
- stopped by `cloudinitd terminate`, which revokes the VM's access for good.

Everything lives under `RUN_DIR/homeshare/` (0700, keys 0600). The private
home key is returned to the caller (it goes into the script uploaded to the
VM) and never printed: `HomeShare.key` is left out of its repr.

This module writes the sshd config and starts and stops the server; the
share's files and the share read back from them are homeshare_state.py, its
processes and ports homeshare_procs.py, the chroot jail homeshare_jail.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import subprocess
from collections.abc import Callable
from pathlib import Path

from cloudinitd import homeshare_jail as jail
from cloudinitd import homeshare_procs as procs
from cloudinitd import homeshare_state as stored
from cloudinitd.homeshare_jail import HomeShareError
from cloudinitd.homeshare_state import (  # noqa: F401 (importers of the share's data)
    SUBDIR,
    HomeShare,
    recorded_home_share,
    recorded_share,
    share_info,
)
from cloudinitd.host import procs as host_procs
from cloudinitd.host.waiting import wait_until

SSHD = "/usr/sbin/sshd"
DEFAULT_PORT = 2222
START_TIMEOUT = 10.0

CONFIG = """\
# cloudinitd home share of run {run}: sftp only, one user, one run-scoped key.
ListenAddress {listen}
Port {port}
HostKey {dir}/ssh_host_ed25519_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {authorized_keys}
{keys_command}
AllowUsers {user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
PermitRootLogin prohibit-password
PermitEmptyPasswords no
UsePAM {use_pam}
# Our files sit in a private 0700 folder that may be below /tmp (sticky, 1777),
# which StrictModes' ownership walk would refuse.
StrictModes no
{chroot}
ForceCommand internal-sftp{read_only}{start_dir}
Subsystem sftp internal-sftp
PermitTTY no
PermitTunnel no
PermitUserRC no
PermitUserEnvironment no
AllowTcpForwarding no
AllowStreamLocalForwarding no
AllowAgentForwarding no
X11Forwarding no
GatewayPorts no
ClientAliveInterval 30
MaxStartups 100:30:200
MaxSessions 20
LogLevel INFO
"""


def default_home_dir() -> tuple[str, str]:
    """(home folder, user name) of the person running cloudinitd.

    Under sudo that is SUDO_USER and their home from the password database
    (sudo usually resets $HOME to root's); otherwise $HOME, so that a test or
    a user can point the share at another folder.
    """
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user and sudo_user != "root" and os.geteuid() == 0:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(sudo_user).pw_dir, sudo_user
    name = pwd.getpwuid(os.getuid()).pw_name
    home = os.environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir
    return str(Path(home).expanduser()), name


def _start_dir(home_dir: str) -> str:
    """`-d DIR` for internal-sftp (relative paths start there); sshd splits the
    forced command on spaces without quoting, so a folder with spaces gets none."""
    if any(c.isspace() for c in home_dir):
        return ""
    return " -d " + home_dir.replace("%", "%%")


def _start_sshd(
    share_dir: Path,
    config: Path,
    address: str,
    port: int,
    wrap: Callable[[list[str]], list[str]] = lambda argv: argv,
) -> int:
    if not os.path.exists(SSHD):
        raise HomeShareError(
            f"home share: {SSHD} not found; install the Debian package openssh-server"
            " (only the binary is used: no system sshd needs to run)"
        )
    with contextlib.suppress(OSError):  # sshd's privilege-separation dir (root only)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    log = share_dir / "sshd.log"
    check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True)
    if check.returncode != 0:
        raise HomeShareError(f"home share: sshd refuses its config: {check.stderr.strip()}")
    argv = wrap([SSHD, "-D", "-f", str(config), "-E", str(log)])
    if not os.path.exists(argv[0]):
        raise HomeShareError(f"home share: {argv[0]} not found (Debian package util-linux)")
    # -D: we keep the pid ourselves (sshd also writes it to PidFile); a session
    # of its own so that Ctrl-C on the CLI does not take the share down. The
    # jail's setup (mount errors) writes to stderr: into sshd's log with the rest.
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    def up() -> bool:
        if proc.poll() is not None:
            raise HomeShareError(
                f"home share: sshd on {address}:{port} exited with status {proc.returncode}:"
                f" {procs.log_tail(log)}"
            )
        return procs.listening(address, port)

    if wait_until(up, START_TIMEOUT, 0.05):
        return proc.pid
    _kill(proc.pid)
    raise HomeShareError(
        f"home share: sshd did not listen on {address}:{port} within"
        f" {START_TIMEOUT:.0f}s: {procs.log_tail(log)}"
    )


def _kill(pid: int, timeout: float = 5.0) -> None:
    """Stop the listener and the connections it forked; wait until they are gone."""
    host_procs.stop_all(host_procs.tree(pid), grace=timeout, kill_wait=timeout)


# --- the interface ----------------------------------------------------------------------


def ensure_home_share(
    run_dir: Path,
    listen_address: str,
    home_dir: str,
    user: str,
    port: int | None = None,
    read_only: bool = False,
) -> HomeShare:
    """Start this run's share of `home_dir` (or reuse the running one) and say how to reach it.

    Idempotent: a share of the same run already serving the same address,
    folder, user and mode is reused as is (same port, same keys). A change of
    any of them restarts it. `port` defaults to the previous one, else 2222,
    else any free port.
    """
    if not Path(home_dir).is_dir():
        raise HomeShareError(f"home share: {home_dir} is not a folder")
    home_dir = jail.inner_path(home_dir)  # absolute, normalised; never "/"
    confined = jail.can_confine()
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise HomeShareError(f"home share: no user {user!r} on this machine") from None
    d = stored.share_dir(run_dir)
    config = d / "sshd_config"
    with stored.locked(d):
        private, public = stored.ensure_key(d / "home_key",
                                            f"cloudinitd-home-{Path(run_dir).name}")
        _, host_public = stored.ensure_key(d / "ssh_host_ed25519_key", "cloudinitd-home-share")
        state = stored.read_state(d)
        wanted = {
            "host": listen_address,
            "user": user,
            "dir": home_dir,
            "read_only": read_only,
            "confined": confined,
        }
        pid = state.get("pid")
        running = bool(pid) and procs.is_our_sshd(pid, config) and procs.alive(pid)
        if (
            running
            and all(state.get(k) == v for k, v in wanted.items())
            and (port is None or state.get("port") == port)
        ):
            share_port = int(state["port"])
        else:
            if running:
                _kill(pid)
            share_port = procs.pick_port(
                listen_address, [port or 0, state.get("port", 0), DEFAULT_PORT]
            )
            authorized = d / "authorized_keys"
            # `restrict`: no forwarding, pty, agent or rc, whatever the config says.
            stored.write_private(authorized, f"restrict {public}\n", mode=0o644)
            keys_command = ""
            if pw.pw_uid != 0 and os.geteuid() == 0:
                # sshd reads AuthorizedKeysFile as the user, who cannot enter
                # root's private folders: have root's sshd hand the key over.
                keys_command = (
                    f"AuthorizedKeysCommand /bin/cat {authorized}\nAuthorizedKeysCommandUser root"
                )
            chroot = "# not root: sshd cannot chroot; the user's own rights apply"
            if confined:
                chroot = f"ChrootDirectory {jail.prepare(run_dir)}"
            stored.write_private(
                config,
                CONFIG.format(
                    run=Path(run_dir).name,
                    listen=listen_address,
                    port=share_port,
                    dir=d,
                    authorized_keys=authorized if not keys_command else "none",
                    keys_command=keys_command,
                    user=user,
                    chroot=chroot,
                    # Without PAM, sshd checks "locked" accounts in /etc/shadow,
                    # which a non-root sshd cannot read: it then refuses every
                    # user. PAM's account check (unix_chkpwd) works unprivileged;
                    # passwords stay off (no password or keyboard-interactive).
                    use_pam="no" if os.geteuid() == 0 else "yes",
                    read_only=" -R" if read_only else "",
                    start_dir=_start_dir(home_dir),
                ),
            )

            def wrap(argv: list[str]) -> list[str]:
                return jail.wrap(argv, run_dir, home_dir, read_only) if confined else argv

            new_pid = _start_sshd(d, config, listen_address, share_port, wrap)
            stored.write_private(
                d / "share.json", json.dumps({**wanted, "port": share_port, "pid": new_pid}) + "\n"
            )
        _gateway_ports(run_dir, listen_address, [share_port])
        return stored.make_share(listen_address, share_port, user, home_dir, private,
                                 host_public, read_only, confined)


def _gateway_ports(run_dir: Path, address: str, ports: list[int]) -> None:
    """On our bridge's gateway the firewall admits only ports granted to the run: this one."""
    from cloudinitd.providers import hostnet

    if address == hostnet.bridge_config().gateway:
        hostnet.set_gateway_ports(hostnet.run_key(run_dir), ports)


def share_pid(run_dir: Path) -> int | None:
    """The pid of the run's running share, if one runs."""
    d = Path(run_dir) / SUBDIR
    pid = stored.read_state(d).get("pid") if d.is_dir() else None
    if pid and procs.is_our_sshd(pid, d / "sshd_config") and procs.alive(pid):
        return int(pid)
    return None


def stop_home_share(run_dir: Path) -> bool:
    """Stop the run's share (only the process it started); True if one was running.

    The keys stay (the run's folder is history); the key is useless once the
    share is gone, and a later share of the run makes its authorized_keys anew.
    """
    d = Path(run_dir) / SUBDIR
    if not d.is_dir():
        return False
    with stored.locked(d):
        pid = share_pid(run_dir)
        if pid is None:
            return False
        _kill(pid)
        jail.release(run_dir)
        state = stored.read_state(d)
        _gateway_ports(run_dir, state.get("host", ""), [])
        state.pop("pid", None)
        stored.write_private(d / "share.json", json.dumps(state) + "\n")
        return True
