#!/bin/sh
# Runs from the stage folder; its bundle's files are beside it.
set -e
cat bundle/payload.txt > "$1/cache-payload"
