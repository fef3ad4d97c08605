#!/usr/bin/env bash
# A real run from start to end on local containers, written down as a terminal
# transcript (README "A run from start to end"), plus a picture of the live run's
# graph: boot, output, ssh, exec, edit the plan, diff, reload, graph, terminate.
#
#   scripts/transcript.sh [TRANSCRIPT] [GRAPH.svg]
#
# Defaults: docs/transcript.txt and docs/graph-run.svg. Needs what `make demo`
# needs (root, LXC, the base image). CLOUDINITD (default .venv/bin/cloudinitd)
# is the command to run; the transcript always shows it as `cloudinitd`.
# The run lives in a fresh $CLOUDINITD_HOME and is terminated at the end,
# also when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:-docs/transcript.txt}")
SVG=$(realpath -m "${2:-docs/graph-run.svg}")
read -r -a CID <<< "${CLOUDINITD:-.venv/bin/cloudinitd}"
case "${CID[0]}" in */*) CID[0]=$(realpath -s "${CID[0]}") ;; esac
RUN=hello
WORK=$(mktemp -d /tmp/cloudinitd-transcript.XXXXXX)
export CLOUDINITD_HOME="$WORK/home"
cp -r plans/hello-cluster "$WORK/plan"
PLAN="$WORK/plan"
cd "$WORK"  # the transcript types `plan`, as a user in their own folder would

cleanup() {
    "${CID[@]}" terminate "$RUN" -q >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

: > "$OUT"
say() {  # a shell line as typed, paths shortened to what a reader would type
    local text="$*"
    echo "\$ ${text//$WORK\//}" >> "$OUT"
}
quoted() {  # the words as a user types them: quoted only when they need it
    local out="" word
    for word in "$@"; do
        case "$word" in
            *[!A-Za-z0-9_./=:-]*) out+=" '${word//\'/\'\\\'\'}'" ;;
            *) out+=" $word" ;;
        esac
    done
    echo "${out# }"
}
step() {  # `step ARGS...`: cloudinitd ARGS, shown and run, stdout and stderr in order
    say "cloudinitd $(quoted "$@")"
    "${CID[@]}" "$@" 2>&1 | sed "s#$WORK/##g" >> "$OUT"
    echo >> "$OUT"
}

step boot plan --name "$RUN" -q
step output "$RUN"
step output "$RUN" web.url --raw
step ssh "$RUN" probe -- 'hostname; uptime -p'
step exec "$RUN" -s web -- 'wc -c < /srv/hello/index.html'

# An edit: one more web server, and a changed page.
say "sed -i 's/web_count: 3/web_count: 4/' plan/plan.yml"
sed -i 's/web_count: 3/web_count: 4/' "$PLAN/plan.yml"
say "sed -i 's/I am /Hello, I am /' plan/web-boot.sh.j2"
sed -i 's/I am /Hello, I am /' "$PLAN/web-boot.sh.j2"
echo >> "$OUT"
step diff plan --name "$RUN"
step reload plan --name "$RUN" -q
step status "$RUN"
"${CID[@]}" graph "$RUN" --format svg -o "$SVG"
say "cloudinitd graph $RUN --format svg -o docs/graph-run.svg"
echo >> "$OUT"
step terminate "$RUN" -q
trap - EXIT
cd /
rm -rf "$WORK"
echo "wrote $OUT and $SVG"
