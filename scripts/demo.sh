#!/usr/bin/env bash
# `make demo`: boot the shipped hello-cluster plan on local containers, show it
# working, and say how to reach and remove it. `make demo-down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
CID=.venv/bin/cloudinitd
RUN=${DEMO_RUN:-demo}
HOME_DIR=${CLOUDINITD_HOME:-$HOME/.cloudinitd}

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
ADDR=$("$CID" status "$RUN" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["services"]["probe"]["instances"][0]["address"])')
echo "Reach the probe:  ssh -i $HOME_DIR/runs/$RUN/id_ed25519 -o UserKnownHostsFile=$HOME_DIR/runs/$RUN/known_hosts root@$ADDR"
echo "See its checks:   $CID logs $RUN probe"
echo "Terminate it:     $CID terminate $RUN     (or: make demo-down)"
