#!/bin/sh
# Arguments arrive one word each, however hostile.
out=$1
shift
for a in "$@"; do printf '%s\n' "$a"; done > "$out/web-args"
