#!/usr/bin/env bash
# `make demo`: boot the shipped hello-cluster plan on local containers, show it
# working, and say how to reach and remove it. `make demo-down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
CID=.venv/bin/cloudinitd
RUN=${DEMO_RUN:-demo}

if [ "${1:-}" = down ]; then
  exec "$CID" terminate "$RUN"
fi

if "$CID" status "$RUN" --json >/dev/null 2>&1; then
  echo "run $RUN already exists; showing it (remove it with: make demo-down)"
else
  "$CID" boot hello-cluster --name "$RUN"
fi
echo
"$CID" status "$RUN" --check
echo
echo "Reach the probe:  $CID ssh $RUN probe          (prints the ssh line: $CID ssh $RUN probe --print)"
echo "Run everywhere:   $CID exec $RUN -- uptime"
echo "See its checks:   $CID logs $RUN probe"
echo "Terminate it:     $CID terminate $RUN     (or: make demo-down)"
