"""The two driver domains of xen_nicbench.py, xvif's HVM container and the
Linux PV driver domain, each given the outer e1000 by passthrough: their
start commands and ready checks, their clean stop, the IOMMU fault check
between phases, and the one Linux PV guest behind either."""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "xen"))

import outernet  # noqa: E402
from guests import XVIF_CONSOLE, Guest, domid, record_console_crashes, shut_down  # noqa: E402

PEER = outernet.PEER_IP
PT_BDF = "0000:00:05.0"                       # the outer e1000 (outernet.NIC_PCI_ADDR)
XVIF_IP = outernet.SUBNET + ".2"
DD_IP = outernet.SUBNET + ".3"
GUEST_IP = outernet.SUBNET + ".12"
GUEST_MAC = "00:16:3e:77:00:0c"
XVIF_CMDLINE = "ip=%s/24 log=info" % XVIF_IP
# test_hvm.PASSTHROUGH's overrides of xvif-hvm.cfg: no emulated NIC, no PV vif,
# the outer e1000 by xen_pt.
XVIF_OVERRIDES = ("vif=[]", 'pci=["%s,permissive=1"]' % PT_BDF)
DD_CONSOLE = "/var/log/xen/console/guest-linuxdd.log"
XVIF_DEFAULT_MEM, DD_DEFAULT_MEM = 64, 256     # xvif-hvm.cfg, linux-dd.cfg
XVIF_MEMS = [int(x) for x in os.environ.get("XVIF_MEMS", "16 24 32").split()]
DD_MEMS = [int(x) for x in os.environ.get("DD_MEMS", "64 96 128 192").split()]
MIB = 1024 * 1024


def log(msg):
    print("[xen_nicbench] %s" % msg, file=sys.stderr, flush=True)


class BenchError(Exception):
    """A path that does not work: reported as an error, never as a number."""


# ------------------------------------------------------------ driver domains

def xvif_start_cmd(memory):
    """The dom0 command that starts xvif with the NIC (as start_xvif_hvm
    does), for the table and for the run."""
    ov = list(XVIF_OVERRIDES) + ["memory=%d" % memory]
    return "sh /guests/xvif-hvm-start.sh /guests/xvif-hvm.cfg '%s' %s" % (
        XVIF_CMDLINE, " ".join("'%s'" % o for o in ov))


def dd_start_cmd(memory):
    """linux-dd.cfg with the NIC by PV passthrough, as test_hvm_pt.py's
    test_linux_driver_domain_gets_the_same_nic_by_pv_passthrough."""
    return ("xl create /guests/linux-dd.cfg 'pci=[\"%s\"]' 'extra=\"console=hvc0 rdinit=/init ip=%s/24 "
            "iommu=soft\"' 'memory=%d'" % (PT_BDF, DD_IP, memory))


# The dom0 shell loop that times start -> ready with dom0's own clock (no
# serial-console round trip per poll): polls the console log every 0.1 s,
# gives up when the domain is gone or crashed (checked every second) or
# after LIMIT polls. Prints "NICREADY rc=<start rc> t=<seconds> ok=<0|1>".
READY_LOOP = r"""
rm -f {con} /tmp/nicstart.out; : > /var/log/xen/xl-{name}.log
t0=$(cut -d' ' -f1 /proc/uptime)
{start} > /tmp/nicstart.out 2>&1; rc=$?
ok=0; i=0
if [ $rc = 0 ]; then
  while [ $i -lt {limit} ]; do
    if {ready}; then ok=1; break; fi
    {notready}
    i=$((i+1))
    if [ $((i % 10)) = 0 ]; then
      st=$(xl list {name} 2>/dev/null | awk 'NR==2{{print $5}}')
      case "$st" in ""|*c*) break;; esac
    fi
    sleep 0.1
  done
fi
t1=$(cut -d' ' -f1 /proc/uptime)
echo "NICREADY rc=$rc t=$(awk -v a=$t0 -v b=$t1 'BEGIN{{printf "%.2f", b-a}}') ok=$ok"
"""


def start_dd(vm, kind, memory, timeout):
    """Starts driver domain `kind` ("xvif" or "linuxdd") with `memory` MiB
    and the NIC; returns (seconds from start to ready, extra info). Raises
    BenchError with the domain's console tail when it does not get ready."""
    if domid(vm, kind) is not None:
        vm.sh("xl destroy %s" % kind, timeout=120)
    record_console_crashes(vm, kind)
    if kind == "xvif":
        con, start = XVIF_CONSOLE, xvif_start_cmd(memory)
        ready, notready = "grep -q 'xvif ready' %s 2>/dev/null" % con, ":"
        vm.sh("rm -f /var/log/xen/qemu-dm-xvif.log", quiet=True)
    else:
        con, start = DD_CONSOLE, dd_start_cmd(memory)
        # ready: the NIC on the bridge and the vif hotplug loop running; the
        # loop's line without the NIC's line means the NIC never came up
        ready = ("grep -q 'netdd: eth0 on br0' {c} 2>/dev/null && grep -q XVIF-NETDD-DEVD-UP {c}"
                 .format(c=con))
        notready = "grep -q XVIF-NETDD-DEVD-UP %s 2>/dev/null && break" % con
    script = READY_LOOP.format(con=con, name=kind, start=start, limit=int(timeout * 10), ready=ready,
                               notready=notready)
    rc, out = vm.sh(script, timeout=timeout + 200)
    m = re.search(r"NICREADY rc=(\d+) t=([0-9.]+) ok=(\d)", out)
    if not m or m.group(1) != "0" or m.group(3) != "1":
        _, started = vm.sh("cat /tmp/nicstart.out", quiet=True)
        _, tail = vm.sh("grep -a -m1 -i -E 'Kernel panic|Out of memory' %s 2>/dev/null; tail -n 25 %s 2>/dev/null; "
                        "xl list %s 2>&1 | tail -n 1" % (con, con, kind), quiet=True)
        # the line that says why: the kernel's or libxc's panic / out of
        # memory first (libxl also logs an error for every NIC handed over:
        # the e1000 has no reset), else any error
        lines = [l.strip() for l in (tail + "\n" + started).splitlines()]
        why = [l for l in lines if re.search(r"panic|out of memory", l, re.I)] or \
              [l for l in lines if re.search(r"error", l, re.I)]
        raise BenchError("%s (memory=%d) not ready%s: %s\n--- start output:\n%s\n--- console tail:\n%s" % (
            kind, memory, " (%s)" % why[0][:160] if why else "", m.group(0) if m else out.strip()[-500:],
            started.strip()[-1500:], tail.strip()[-2500:]))
    info = {}
    if kind == "xvif":
        # "xvif ready: 12.345 ms after entry, 678 ms since reset"
        _, o = vm.sh("grep -a 'xvif ready:' %s | tail -n 1" % con, quiet=True)
        mm = re.search(r"ready: ([0-9.]+) ms after entry(?:, (\d+) ms since reset)?", o)
        if mm:
            info["ms_after_entry"] = float(mm.group(1))
            if mm.group(2):
                info["ms_since_reset"] = int(mm.group(2))
    return float(m.group(2)), info


# Xen's messages for a DMA the IOMMU refused and for an interrupt with no
# handler (test_hvm_pt.IOMMU_TROUBLE's first kinds).
IOMMU_GREP = "DMAR:\\[|\\[VT-D\\]DMAR|fault addr|IO_PAGE_FAULT|No irq handler for vector|iommu_fault"
FAULTS = []          # (phase, [lines]) in the order seen
_seen_faults = set()


def check_faults(vm, phase):
    """Xen's IOMMU fault lines that are new since the last check, recorded
    against `phase`; returns them."""
    rc, out = vm.sh("xl dmesg | grep -a -i -E '%s' | tail -n 40" % IOMMU_GREP, quiet=True, raw=True)
    new = [l.strip() for l in out.splitlines() if l.strip() and l.strip() not in _seen_faults]
    _seen_faults.update(new)
    if new:
        FAULTS.append((phase, new))
        log("IOMMU faults during %s:\n  %s" % (phase, "\n  ".join(new[:6])))
    return new


def stop(vm, *names):
    """Ends each domain. xvif gets a clean `xl shutdown`, in which it stops
    the NIC's DMA before the NIC goes to its next owner; the Linux domains
    are destroyed (their /init has no power-off path)."""
    for n in names:
        if domid(vm, n) is None:
            continue
        if n == "xvif":
            rc, out = shut_down(vm, "xvif")
            if rc == 0:
                continue
            log("xl shutdown xvif failed (rc=%d), destroying it: %s" % (rc, out.strip()[-300:]))
        vm.sh("xl destroy %s" % n, timeout=120)


def make_guest(vm, kind, wait=240, tries=2):
    """The one Linux PV guest behind `kind`, static address on the peer's
    subnet, one queue (as test_hvm's guests). Under nested TCG a guest's
    busybox /init rarely segfaults at boot: one retry."""
    g = Guest(vm, "nicg", GUEST_IP, GUEST_MAC, backend=kind, queues=1)
    err = None
    for attempt in range(tries):
        g.destroy()
        try:
            record_console_crashes(vm, g.name)
            vm.sh("rm -f %s; : > /var/log/xen/xl-%s.log" % (g.console, g.name), quiet=True)
            rc, out = vm.sh("xl create /guests/guest-linux-pv.cfg 'name=\"%s\"' 'extra=\"console=hvc0 "
                            "rdinit=/init ip=%s/24 nfqueues=1\"' 'vif=[\"backend=%s,mac=%s\"]'"
                            % (g.name, g.ip, kind, g.mac), timeout=300)
            if rc != 0:
                raise AssertionError("xl create nicg failed (rc=%d): %s" % (rc, out.strip()[-1000:]))
            g.wait_up(timeout=wait)
            return g
        except AssertionError as e:
            err = e
            log("guest behind %s not up (attempt %d): %s" % (kind, attempt + 1, str(e)[:300]))
    g.destroy()
    raise BenchError("guest behind %s did not come up: %s" % (kind, str(err)[-1500:]))
