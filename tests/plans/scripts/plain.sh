#!/bin/sh
# not a template: sent verbatim, ${#} and {{ stay as they are
echo ${#} {{ x }}
