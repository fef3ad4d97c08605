#!/bin/sh
pwd > "$1/here-pwd"
echo '{"made": "made here"}' > bootout.json
