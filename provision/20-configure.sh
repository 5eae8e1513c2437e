#!/bin/sh
# Installs the files rendered from provision/templates/ (a tree mirroring /).
set -eu
cp -R --no-preserve=ownership "$GOLDEN_FILES/root/." /
