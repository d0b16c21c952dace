#!/usr/bin/env python3
"""`make run`: boots Xen 4.17 + a Linux dom0 in QEMU (TCG), starts xvif as
the network driver domain in an HVM container that owns a NIC (an e1000
emulated by qemu-xen, on a wire to a peer outside Xen: a network namespace
on this machine), starts a Linux PV guest whose network is served by xvif,
has it ping the peer outside and fetch a file from it, and hands you dom0's
console.

The steps are `run_demo(vm)`; tests/xen/test_demo.py runs the same steps
and what the printed hints promise, so the demo cannot break unnoticed."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import outernet  # noqa: E402
from guests import Guest, start_xvif_hvm  # noqa: E402

PEER_IP = outernet.PEER_IP
XVIF_IP = outernet.SUBNET + ".2"
GUEST_IP = outernet.SUBNET + ".10"
GUEST_MAC = "00:16:3e:00:00:0a"
HTTP_PORT = 8080
HELLO = b"hello from the peer outside Xen, through xvif\n"

HINTS = """
You are at dom0's shell (Xen 4.17, nested in QEMU). xvif owns the NIC; the
peer outside Xen is %(peer)s (a network namespace on the host, dnsmasq and a
web server on port %(port)d). Try:
  xl list                                   domains: Domain-0, xvif, guesta
  xl console xvif                           xvif's log (Ctrl-] leaves)
  xl console guesta                         the guest's shell (press Enter; Ctrl-] leaves); then:
                                              ping %(peer)s; wget -qO- http://%(peer)s:%(port)d/
  xenstore-ls -f /local/domain/$(xl domid xvif)/data   xvif's counters and resources
  xl qemu-monitor-command xvif 'set_link nic0 off'     pull xvif's NIC link (and 'on' again)
  xl network-detach guesta 0; xl network-attach guesta backend=xvif mac=%(mac)s
                                            (the guest's new eth0 comes up with %(ip)s by itself)
  xl shutdown xvif
Quit: Ctrl-A X (QEMU), or `poweroff -f` in dom0.
""" % {"peer": PEER_IP, "port": HTTP_PORT, "mac": GUEST_MAC, "ip": GUEST_IP}


def say(msg):
    print("xvif demo: " + msg, flush=True)


def run_demo(vm):
    """xvif as an HVM container with the NIC and a management address, then
    one Linux PV guest served by it, which pings xvif and the peer outside
    and fetches a file from the peer. Returns the guest."""
    vm.outer.serve(HTTP_PORT, HELLO)
    say("Xen and dom0 are up; starting xvif (HVM container with an e1000, %s/24)..." % XVIF_IP)
    start_xvif_hvm(vm, "ip=%s/24" % XVIF_IP)
    say("starting a Linux PV guest with vif=['backend=xvif,...'] (about 20 s under TCG)...")
    g = Guest(vm, "guesta", GUEST_IP, GUEST_MAC)
    g.create()
    sent, got, _ = g.ping(XVIF_IP, count=5, interval="0.5")
    say("guesta pinged xvif: %d/%d replies" % (got, sent))
    sent, got, _ = g.ping(PEER_IP, count=5, interval="0.5")
    say("guesta pinged the peer outside Xen (%s): %d/%d replies" % (PEER_IP, got, sent))
    rc, out = g.run("wget -qO- http://%s:%d/" % (PEER_IP, HTTP_PORT))
    say("guesta fetched http://%s:%d/ from the peer: %s" % (PEER_IP, HTTP_PORT,
        "'%s'" % HELLO.decode().strip() if HELLO.decode().strip() in out else "FAILED: " + out.strip()[-200:]))
    return g


def main():
    from conftest import guest_files
    from xenvm import XenVM
    if not os.environ.get("XVIF_ELF"):
        sys.exit("xvif demo: set XVIF_ELF to the xvif ELF (`make run` does)")
    vm = XenVM(guest_files=guest_files(), echo=False, monitor=True, outer_net=True)
    vm.boot()
    try:
        run_demo(vm)
        print(HINTS, flush=True)
        if not sys.stdin.isatty():
            say("no terminal on stdin, so no interactive shell; stopping.")
        else:
            vm.p.sendline("")
            vm.p.logfile_read = None
            vm.p.interact(escape_character=None)
    finally:
        vm.close(quiet=True)


if __name__ == "__main__":
    main()
