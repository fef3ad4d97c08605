#!/bin/sh
test -s "$1/web-args" && echo ready >> "$1/ready"
