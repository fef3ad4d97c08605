"""One simulated EC2 cloud: a moto server behind TestCloudMiddleware, in this process.

Run as a script (`python server.py`): binds 127.0.0.1 on a free port, prints
`TESTCLOUD PORT <n>` on stdout once it accepts connections, and serves until
SIGTERM/SIGINT or until its parent process dies. One process per cloud:
two moto servers in one process would share their state.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time

# Must be set before moto is imported: skipping the default AMI catalogue
# makes the first EC2 call faster; nothing here validates AMIs anyway.
os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Never outlive the test run that started us, even if it is SIGKILLed."""
    parent = os.getppid()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(1)

    threading.Thread(target=watch, daemon=True).start()


def main() -> int:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from middleware import TestCloudMiddleware  # sibling module, loaded by path
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    _die_with_parent()
    app = TestCloudMiddleware(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)

    def stop(signum: int, frame: object) -> None:
        # shutdown() blocks until serve_forever returns: call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"TESTCLOUD PORT {server.server_address[1]}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
