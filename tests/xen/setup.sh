#!/bin/bash
# Install what the Xen-in-QEMU harness needs on a Debian 12 (bookworm) host.
# Idempotent: checks first, installs only what is missing, and says what it did.
#
#   * QEMU >= 10 (qemu-system-x86 from bookworm-backports; bookworm's own 7.2
#     crashes dom0). The backports suite is DERIVED from the machine's existing
#     apt sources (deb822 *.sources or one-line sources.list): same mirror URI,
#     components and keyring, suite "<codename>-backports".
#   * python3 modules pexpect and pytest (pip for a pyenv/venv python, Debian
#     packages for the system python).
#   * cpio, gzip, coreutils' timeout, dpkg-deb (all normally present).
#
# Must run as root (or with sudo available). Safe with no stdin (CI).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

QEMU=/usr/bin/qemu-system-x86_64
QEMU_MIN_MAJOR=10
APT_ETC=${XVIF_APT_ETC:-/etc/apt}   # overridable only to test the source derivation
INSTALLED=()
SUDO=
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

say() { echo "[xen-setup] $*" >&2; }

APT_UPDATED=0
apt_update() {
  if [ $APT_UPDATED = 0 ]; then
    say "apt-get update"
    $SUDO apt-get update -qq </dev/null
    APT_UPDATED=1
  fi
}
apt_install() { # args passed to apt-get install
  $SUDO apt-get install -y -qq --no-install-recommends "$@" </dev/null >&2
}

. /etc/os-release
CODENAME=${VERSION_CODENAME:-}
[ -n "$CODENAME" ] || { say "cannot tell the Debian codename from /etc/os-release"; exit 1; }

########## backports source, derived from the existing sources ##########
backports_configured() {
  # any enabled sources entry mentioning <codename>-backports?
  local f
  for f in "$APT_ETC"/sources.list "$APT_ETC"/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    grep -Eq "^[[:space:]]*deb[[:space:]].*[[:space:]]${CODENAME}-backports([[:space:]]|$)" "$f" && return 0
  done
  for f in "$APT_ETC"/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v s="${CODENAME}-backports" 'BEGIN{RS="";FS="\n"; found=0}
      { en=1; hit=0
        for (i=1;i<=NF;i++) { l=$i; if (l ~ /^[ \t]*#/) continue
          if (tolower(l) ~ /^enabled:[ \t]*no/) en=0
          if (l ~ /^Suites:/) { n=split(substr(l,8),a,/[ \t]+/); for(j=1;j<=n;j++) if (a[j]==s) hit=1 } }
        if (en && hit) found=1 }
      END{exit found?0:1}' "$f" && return 0
  done
  return 1
}

write_source() { # $1=file name in sources.list.d  $2=derived from  $3=content
  local dst="$APT_ETC/sources.list.d/$1"
  if [ "${PRINT_ONLY:-0}" = 1 ]; then printf '== %s (from %s)\n%s\n' "$dst" "$2" "$3"; return; fi
  say "adding ${CODENAME}-backports as $dst (derived from $2)"
  printf '# Added by tests/xen/setup.sh (derived from %s)\n%s\n' "$2" "$3" | $SUDO tee "$dst" >/dev/null
}

add_backports() {
  local out f
  # 1) deb822: copy the first enabled "deb" stanza whose Suites has exactly
  #    <codename> (URIs, Components, Signed-By incl. multi-line values).
  for f in "$APT_ETC"/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    out=$(awk -v c="$CODENAME" '
      function flush(   n,a,j,ok) {
        if (!("types" in F) || !("suites" in F) || !("uris" in F)) return
        if (tolower(F["enabled"]) ~ /no/) return
        if (F["types"] !~ /(^|[ \t])deb([ \t]|$)/) return
        n=split(F["suites"],a,/[ \t]+/); ok=0; for(j=1;j<=n;j++) if (a[j]==c) ok=1
        if (!ok) return
        printf "Types: deb\nURIs:%s\nSuites: %s-backports\nComponents:%s\n", F["uris"], c, F["components"]
        if ("signed-by" in F) printf "Signed-By:%s\n", F["signed-by"]
        done=1; exit }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); delete F; key=""; next }
      /^[ \t]/ { if (key!="") F[key]=F[key] "\n" $0; next }
      { i=index($0,":"); if (!i) next; key=tolower(substr($0,1,i-1)); F[key]=substr($0,i+1) }
      END { if (!done) flush() }' "$f")
    if [ -n "$out" ]; then
      write_source xvif-backports.sources "$f" "$out"; return 0
    fi
  done
  # 2) one-line format: "deb [opts] URI <codename> comps..."
  for f in "$APT_ETC"/sources.list "$APT_ETC"/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    out=$(awk -v c="$CODENAME" '$1=="deb" { i=2; opts="";
        if ($2 ~ /^\[/) { while (i<=NF && $i !~ /\]$/) { opts=opts" "$i; i++ } opts=opts" "$i; i++ }
        uri=$i; suite=$(i+1); if (suite!=c) next
        comps=""; for (j=i+2;j<=NF;j++) comps=comps" "$j
        printf "deb%s %s %s-backports%s\n", opts, uri, c, comps; exit }' "$f")
    if [ -n "$out" ]; then
      write_source xvif-backports.list "$f" "$out"; return 0
    fi
  done
  say "found no enabled '$CODENAME' deb source to derive ${CODENAME}-backports from"
  return 1
}

qemu_major() {
  [ -x "$QEMU" ] || { echo 0; return; }
  "$QEMU" --version 2>/dev/null | sed -n 's/^QEMU emulator version \([0-9]*\)\..*/\1/p' | head -1
}

if [ "${1:-}" = --print-backports-source ]; then   # dry run, for testing the derivation
  PRINT_ONLY=1; add_backports; exit
fi

########## small tools ##########
need_pkgs=()
command -v cpio >/dev/null || need_pkgs+=(cpio)
command -v gzip >/dev/null || need_pkgs+=(gzip)
command -v timeout >/dev/null || need_pkgs+=(coreutils)
command -v dpkg-deb >/dev/null || need_pkgs+=(dpkg)
# the peer outside Xen (outernet.py, test_hvm.py): DHCP server, ping, netns
command -v dnsmasq >/dev/null || need_pkgs+=(dnsmasq-base)
command -v ping >/dev/null || need_pkgs+=(iputils-ping)
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v apt-get >/dev/null || { say "apt-get missing: not a Debian host?"; exit 1; }
if [ ${#need_pkgs[@]} -gt 0 ]; then
  apt_update
  say "installing ${need_pkgs[*]}"
  apt_install "${need_pkgs[@]}"
  INSTALLED+=("${need_pkgs[@]}")
fi

########## QEMU ##########
if [ "$(qemu_major)" -ge $QEMU_MIN_MAJOR ] 2>/dev/null; then
  say "QEMU ok: $("$QEMU" --version | head -1)"
else
  say "QEMU >= $QEMU_MIN_MAJOR needed (have: $([ -x $QEMU ] && $QEMU --version | head -1 || echo none))"
  if [ "$CODENAME" = bookworm ]; then
    if ! backports_configured; then add_backports; APT_UPDATED=0; fi
    apt_update
    say "installing qemu-system-x86 from ${CODENAME}-backports (takes a minute or two)"
    apt_install -t "${CODENAME}-backports" qemu-system-x86
  else
    apt_update
    say "installing qemu-system-x86 from $CODENAME"
    apt_install qemu-system-x86
  fi
  INSTALLED+=("qemu-system-x86 ($("$QEMU" --version | head -1))")
  [ "$(qemu_major)" -ge $QEMU_MIN_MAJOR ] || { say "QEMU is still older than $QEMU_MIN_MAJOR"; exit 1; }
fi

########## apt lists (build-image.sh needs them for apt-get download) ##########
pol=$(apt-cache policy xen-hypervisor-4.17-amd64 2>/dev/null || true)
if ! grep -q 'Candidate: [0-9]' <<<"$pol"; then
  apt_update
fi

########## python modules ##########
PY=$(command -v python3 || true)
[ -n "$PY" ] || { apt_update; apt_install python3; INSTALLED+=(python3); PY=$(command -v python3); }
missing_py=()
for m in pexpect pytest; do
  "$PY" -c "import $m" 2>/dev/null || missing_py+=("$m")
done
if [ ${#missing_py[@]} -gt 0 ]; then
  # pip for a pyenv / venv / non-Debian python; Debian packages for /usr/bin/python3
  prefix=$("$PY" -c 'import sys; print(sys.prefix)')
  real=$("$PY" -c 'import sys; print(sys.executable)')
  if [ "$prefix" = /usr ] && [ "${real#/usr/bin/}" != "$real" ]; then
    apt_update
    debs=(); for m in "${missing_py[@]}"; do debs+=("python3-$m"); done
    say "installing ${debs[*]} (Debian packages for $real)"
    apt_install "${debs[@]}"
    INSTALLED+=("${debs[@]}")
  else
    say "installing ${missing_py[*]} with pip into $real"
    PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install -q --disable-pip-version-check "${missing_py[@]}" </dev/null >&2
    INSTALLED+=("pip: ${missing_py[*]}")
  fi
  for m in "${missing_py[@]}"; do "$PY" -c "import $m" || { say "python3 cannot import $m"; exit 1; }; done
fi

if [ ${#INSTALLED[@]} -eq 0 ]; then
  say "nothing to install: everything was already present"
else
  say "installed:"; for i in "${INSTALLED[@]}"; do say "  - $i"; done
fi
