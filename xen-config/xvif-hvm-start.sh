#!/bin/sh
# Start xvif as an HVM container (xvif-hvm.cfg) with a command line.
#
#   xvif-hvm-start.sh CONFIG "CMDLINE" [KEY=VALUE ...]
#   xvif-hvm-start.sh /etc/xen/xvif-hvm.cfg "ip=dhcp log=debug"
#
# An HVM container boots without a command line; xvif reads it from the
# xenstore key /local/domain/<domid>/xvif/cmdline instead. So: create the
# domain paused, write the key, unpause. KEY=VALUE are passed to `xl create`
# as overrides (e.g. 'name="xvif2"' 'firmware="/path/to/xvif"').
# Prints the new domain's id as its last line.
set -e
[ $# -ge 2 ] || { echo "usage: $0 CONFIG \"CMDLINE\" [KEY=VALUE ...]" >&2; exit 2; }
cfg=$1; cmdline=$2; shift 2
# the domain's name: the last name= override, else the config's
name=$(sed -n 's/^ *name *= *"\([^"]*\)".*/\1/p' "$cfg" | tail -n 1)
for kv in "$@"; do
  case $kv in name=*) name=$(echo "${kv#name=}" | tr -d "\"'");; esac
done
[ -n "$name" ] || { echo "$0: no name= in $cfg" >&2; exit 2; }
xl create -p "$cfg" "$@"
domid=$(xl domid "$name")
if ! xenstore-write "/local/domain/$domid/xvif/cmdline" "$cmdline"; then
  echo "$0: cannot write the command line; destroying $name" >&2
  xl destroy "$name"; exit 1
fi
xl unpause "$name"
echo "$domid"
