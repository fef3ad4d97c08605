"""Streaming one command over an SSH exec channel: output to the step's log as it arrives.

Split from steps.py (which decides what to run); this is the channel loop
alone: read output until EOF, stop waiting for a background process that
keeps the output open after the script exited, honour a local deadline, and
for one-shot steps collect the stderr trailer (script.oneshot_command).
"""

from __future__ import annotations

import time
from typing import Any

from cloudinitd.remote.script import MAX_EXPORT, StepLog, parse_trailer
from cloudinitd.remote.session import Session

# After the script exits, how long to keep reading output that a background
# process it started may still hold open before giving up on it.
EXIT_GRACE = 1.0
# What one step attempt may write to its log file: past it the output is read
# (the script goes on) and its last lines kept for the tail, but not stored, so
# a runaway script (or a host that floods) does not fill this machine's disk.
MAX_LOG_BYTES = 256 * 1024 * 1024
# The one-shot trailer on stderr: status, size and an export of at most
# MAX_EXPORT bytes. More means something on the host writes to that stream.
MAX_TRAILER = MAX_EXPORT + 4096


class StreamError(ValueError):
    """What came back on the channel is not what the step's command sends."""


def _read_stderr(chan: Any, err: bytearray) -> None:
    while chan.recv_stderr_ready():
        err += chan.recv_stderr(65536)
        if len(err) > MAX_TRAILER:
            raise StreamError(f"more than {MAX_TRAILER} bytes on the step's stderr, where only"
                              " its status and export belong: something on the host writes"
                              " there")


def stream_command(sess: Session, command: str, log: StepLog, limit: float,
                   stdin: bytes | None = None) -> tuple[int | None, bool, bytes]:
    """Run `command`, streaming its output to `log`; (exit status, hit local deadline, stderr).

    Without `stdin` the command's stderr joins its output (the SFTP way);
    with it, `stdin` is sent first and stderr is kept apart for the one-shot
    trailer (script.oneshot_command), which is read until complete.
    """
    chan = sess.channel()
    err = bytearray()
    try:
        chan.set_combine_stderr(stdin is None)
        chan.exec_command(command)
        if stdin:
            chan.sendall(stdin)
        chan.shutdown_write()
        chan.settimeout(0.25)
        deadline = time.monotonic() + limit
        exited_at: float | None = None
        kept = 0
        while True:
            _read_stderr(chan, err)
            try:
                data = chan.recv(65536)
            except TimeoutError:
                data = None
            if data:
                room = max(0, MAX_LOG_BYTES - kept)
                if room:
                    log.write(data[:room])
                if len(data) > room:  # past the limit: for the tail only
                    if kept <= MAX_LOG_BYTES:  # the first read past it
                        log.note(f"output past {MAX_LOG_BYTES // (1024 * 1024)} MiB is not"
                                 " kept here; the step goes on (its last lines are in the"
                                 " error, if it fails)")
                    log.remember(data[room:])
                kept += len(data)
                continue
            if data == b"":  # EOF: every writer closed its end
                break
            now = time.monotonic()
            if chan.exit_status_ready():
                exited_at = exited_at or now
                if now - exited_at > EXIT_GRACE:
                    log.note(
                        "the script exited but a background process keeps its output open; "
                        "not waiting for it (redirect daemons' output to a file)"
                    )
                    break
            if now > deadline:
                return None, True, bytes(err)
        while not chan.status_event.wait(0.25):
            if time.monotonic() > deadline:
                return None, True, bytes(err)
            if chan.closed:
                break
        if stdin is not None:
            drain_trailer(chan, err, min(deadline, time.monotonic() + 5))
        return (chan.exit_status if chan.exit_status_ready() else None), False, bytes(err)
    finally:
        chan.close()


def drain_trailer(chan: Any, err: bytearray, until: float) -> None:
    """The rest of stderr: the trailer may trail the exit status by a moment."""
    while True:
        _read_stderr(chan, err)
        try:
            if parse_trailer(bytes(err)) is not None:
                return
        except ValueError:
            return
        if chan.eof_received or time.monotonic() > until:
            _read_stderr(chan, err)
            return
        time.sleep(0.01)
