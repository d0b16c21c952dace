#!/bin/bash
# Builds hostile-netfront (a user-space netfront that misbehaves on command,
# see hostile-netfront.c) as a static x86-64 binary: build.sh OUTPUT.
# Called by tests/xen/build-image.sh for the domU image; needs gcc and the
# static glibc (libc6-dev) on the host, no network.
set -euo pipefail
HERE=$(dirname "$(readlink -f "$0")")
OUT=${1:?usage: build.sh OUTPUT}
command -v gcc >/dev/null || { echo "build.sh: needs gcc (and libc6-dev for -static)" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"
gcc -static -O2 -s -Wall -Wextra -Werror -o "$OUT" "$HERE/hostile-netfront.c"
