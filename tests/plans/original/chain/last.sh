#!/bin/sh
echo "$2" > "$1/last"
echo "$3" >> "$1/last"
