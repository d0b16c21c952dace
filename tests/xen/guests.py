"""Linux PV guests for the Xen tests: create them with backend=xvif and run
commands inside them through their command agent (see build-image.sh: the
guest reads data/cmd from its own xenstore directory and answers in
data/result, printing the output on its console)."""
import re
import shlex
import time

XVIF_CONSOLE = "/var/log/xen/console/guest-xvif.log"


def last_line(out):
    lines = out.strip().splitlines()
    return lines[-1].strip() if lines else ""


def last_number(out):
    """The last line of `out` that is only digits, as an int, or None. dom0's
    kernel may print to the same console while a command runs, so a
    command's one-number answer is not always its last line."""
    nums = [l.strip() for l in out.splitlines() if l.strip().isdigit()]
    return int(nums[-1]) if nums else None


def domid(xen, name):
    """The domain's id, or None when `xl` knows no such domain."""
    rc, out = xen.sh("xl domid %s 2>/dev/null" % name, quiet=True)
    return last_number(out) if rc == 0 else None


def wait_until(what, fn, timeout=120, interval=1.0):
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("timed out after %ds waiting for %s" % (timeout, what))
        time.sleep(interval)


def xl_log_tail(xen, name, lines=8):
    """The last lines of xl's own log for domain `name` (where libxl says why
    a build failed)."""
    rc, out = xen.sh("tail -n %d /var/log/xen/xl-%s.log 2>/dev/null" % (lines, name), quiet=True)
    return out.strip()


def xl_create(xen, args, name, timeout=300):
    """`xl create ARGS` for domain `name`; any failure (including xl itself
    crashing after the domain was built) fails at once with xl's output and
    its log."""
    rc, out = xen.sh("xl create " + args, timeout=timeout)
    if rc != 0:
        raise AssertionError("xl create %s failed (rc=%d):\n%s\n--- xl-%s.log:\n%s" % (
            name, rc, out.strip()[-2000:], name, xl_log_tail(xen, name)))
    return out


def start_xvif(xen, ip, memory=64, timeout=120):
    """(Re)starts xvif from the shipped xen-config/xvif.cfg with management
    address `ip`/24 and waits for its ready line; returns its domid."""
    if domid(xen, "xvif") is not None:
        xen.sh("xl destroy xvif", timeout=120)
    xen.sh("rm -f %s" % XVIF_CONSOLE, quiet=True)
    xl_create(xen, "/guests/xvif.cfg 'extra=\"ip=%s/24\"' 'memory=%d'" % (ip, memory), "xvif")
    wait_until("xvif ready", lambda: xen.sh("grep -c 'xvif ready' %s" % XVIF_CONSOLE, quiet=True)[0] == 0,
               timeout=timeout)
    return domid(xen, "xvif")


def shut_down(xen, name, timeout=120):
    """`xl shutdown -w name`, then waits until xl has cleaned the domain up
    (the shutdown returns when the domain stops; its devices, a passed-
    through one among them, are released after). Returns (rc, output)."""
    rc, out = xen.sh("xl shutdown -w %s" % name, timeout=timeout)
    if rc == 0:
        wait_until("%s to be cleaned up" % name, lambda: domid(xen, name) is None, timeout=timeout)
    return rc, out


QEMU_DM_LOG = "/var/log/xen/qemu-dm-xvif.log"


def start_xvif_hvm(xen, cmdline, overrides=(), timeout=180):
    """(Re)starts xvif as an HVM container owning a NIC (xvif-hvm.cfg, through
    xvif-hvm-start.sh, which puts `cmdline` into its xenstore home, with
    `overrides` for xl create, e.g. a passed-through NIC), waits for its
    ready line; returns its domid."""
    if domid(xen, "xvif") is not None:
        xen.sh("xl destroy xvif", timeout=120)
    record_console_crashes(xen, "xvif")
    xen.sh("rm -f %s %s; : > /var/log/xen/xl-xvif.log" % (XVIF_CONSOLE, QEMU_DM_LOG), quiet=True)
    rc, out = xen.sh("sh /guests/xvif-hvm-start.sh /guests/xvif-hvm.cfg '%s' %s" % (
        cmdline, " ".join("'%s'" % o for o in overrides)), timeout=300)
    if rc != 0:
        _, dm = xen.sh("cat %s 2>/dev/null" % QEMU_DM_LOG, quiet=True)
        raise AssertionError("xvif-hvm-start.sh failed (rc=%d):\n%s\n--- xl-xvif.log:\n%s\n--- %s:\n%s" % (
            rc, out.strip()[-2000:], xl_log_tail(xen, "xvif"), QEMU_DM_LOG, dm.strip()[-2000:]))
    wait_until("xvif ready", lambda: xen.sh("grep -c 'xvif ready' %s" % XVIF_CONSOLE, quiet=True)[0] == 0,
               timeout=timeout)
    return domid(xen, "xvif")


def xvif_domid(xen):
    """xvif's domid; fails the test plainly when xvif is not running."""
    d = domid(xen, "xvif")
    if d is None:
        rc, out = xen.sh("xl dmesg | tail -n 5", quiet=True)
        raise AssertionError("xvif is not running; xl dmesg tail:\n" + out.strip())
    return d


# A triple fault of an HVM-type domain. In this suite only xvif is one (the
# guests are PV), and the nested-SVM emulation of QEMU TCG triple-faults
# such a domain under load on its own: tests/xen/nested-repro shows the same
# line for a guest of static assembly that never touches its own tables.
NESTED_TRIPLE_RX = re.compile(r"\[\s*([0-9.]+)\]\s+d(\d+)v\d+ Triple fault - invoking HVM shutdown")


def nested_triple_faults(text):
    """(xen timestamp, domid) of each such triple fault in serial text."""
    return sorted({(m.group(1), int(m.group(2))) for m in NESTED_TRIPLE_RX.finditer(text.replace("\r", ""))})


# Crashes that must never happen in a run: user-space crashes in dom0 or a
# guest (kernel lines and glibc/busybox messages), xl dying, a domain that
# could not be built, a triple fault. The patterns do not match the grep
# command lines that search for them (those are echoed on the console too).
CRASH_RX = re.compile(
    r"segfault at [0-9a-f]+ ip|general protection fault ip:|traps: \S+\[\d+\] |"
    r"(?<!')\bAborted\b(?!')|malloc\(\): [a-z]|free\(\): [a-z]|corrupted (?:size|double-linked|top size)|"
    r"died due to fatal signal|Segmentation fault|unable to XZ decompress|Triple fault")
CRASH_GREP = ("-e 'segfault at [0-9a-f]* ip' -e 'general protection fault ip:' -e 'Abort[e]d' "
              "-e 'malloc(): [a-z]' -e 'free(): [a-z]' -e 'died due to fatal [s]ignal' -e 'Segmentation [f]ault' "
              "-e 'unable to XZ [d]ecompress' -e 'Triple [f]ault'")


def crash_lines(text):
    return [l.strip() for l in text.replace("\r", "").split("\n") if CRASH_RX.search(l)]


def scan_logs(xen, paths):
    """Crash lines in dom0 files (guest consoles, xl logs), as 'file: line'."""
    rc, out = xen.sh("grep -a -H %s %s 2>/dev/null; true" % (CRASH_GREP, " ".join(paths)), quiet=True)
    return [l.strip() for l in out.splitlines() if CRASH_RX.search(l)]


def record_console_crashes(xen, name):
    """Keeps the crash lines of a guest's console and xl logs, which are
    about to be emptied (the guest is created again), for the end-of-module
    check."""
    found = scan_logs(xen, ["/var/log/xen/console/guest-%s.log" % name, "/var/log/xen/xl-%s.log" % name])
    if found:
        xen.crashes.extend(found)


class Guest:
    def __init__(self, xen, name, ip, mac, backend="xvif", queues=None, vif=""):
        """queues: netfront's max_queues (None: its default, one per vCPU);
        vif: more keys for the vif spec, e.g. "rate=10Mb/s,bridge=red"."""
        self.xen, self.name, self.ip, self.mac, self.backend = xen, name, ip, mac, backend
        self.queues = queues
        self.vif = vif
        self.n = 0

    @property
    def console(self):
        return "/var/log/xen/console/guest-%s.log" % self.name

    @property
    def domid(self):
        return domid(self.xen, self.name)

    def create(self):
        record_console_crashes(self.xen, self.name)
        self.xen.sh("rm -f %s; : > /var/log/xen/xl-%s.log" % (self.console, self.name), quiet=True)
        nfq = " nfqueues=%d" % self.queues if self.queues else ""
        xl_create(self.xen, "/guests/guest-linux-pv.cfg 'name=\"%s\"' 'extra=\"console=hvc0 rdinit=/init ip=%s/24%s\"' "
                            "'vif=[\"backend=%s,mac=%s%s\"]'" % (self.name, self.ip, nfq, self.backend, self.mac,
                                                                 "," + self.vif if self.vif else ""), self.name)
        self.wait_up()

    def wait_up(self, timeout=240, marker="XVIF-DOMU-UP"):
        """Waits for the command agent and `marker` (eth0 up, by default) on
        the guest's console."""
        def up():
            if self.domid is None:
                raise AssertionError("%s is gone before it came up; xl-%s.log:\n%s" % (
                    self.name, self.name, xl_log_tail(self.xen, self.name)))
            return self.grep("XVIF-AGENT-UP") and self.grep(marker)
        wait_until("%s's agent and %s" % (self.name, marker), up, timeout=timeout, interval=2)

    def ensure(self):
        """Creates the guest again if it is gone (a test before destroyed it
        or failed half-way), so each test starts from a running guest."""
        if self.domid is None:
            self.create()
        return self

    def faults(self):
        """Crash lines on this guest's console so far."""
        return scan_logs(self.xen, [self.console])

    def grep(self, pattern):
        rc, out = self.xen.sh("grep -c %s %s 2>/dev/null" % (shlex.quote(pattern), self.console), quiet=True)
        return rc == 0 and last_line(out) not in ("", "0")

    def run(self, cmd, timeout=180):
        """Runs `cmd` in the guest; returns (rc, output)."""
        d = self.domid
        assert d is not None, "%s is not running" % self.name
        self.n += 1
        tag = "%d%d" % (int(time.time()) % 100000, self.n)
        self.xen.sh("xenstore-write /local/domain/%d/data/cmd %s" % (d, shlex.quote("%s:%s" % (tag, cmd))), quiet=True)

        def result():
            rc, out = self.xen.sh("xenstore-read /local/domain/%d/data/result 2>/dev/null" % d, quiet=True)
            line = last_line(out)
            return line if line.startswith(tag + ":") else None
        res = wait_until("%s to run %r" % (self.name, cmd), result, timeout=timeout, interval=1)
        rc = int(res.split(":", 1)[1])
        _, text = self.xen.sh("cat %s" % self.console, quiet=True)
        m = re.search(r"XVIF-CMD-BEGIN %s\n(.*?)XVIF-CMD-END %s rc=" % (tag, tag), text.replace("\r", ""), re.S)
        return rc, (m.group(1) if m else "")

    def ping(self, target, count=100, interval="0.2"):
        # -W 10: replies delayed by a busy host still count (the nested
        # emulator can stall a vCPU for seconds); a lost packet is still lost.
        rc, out = self.run("ping -c %d -i %s -W 10 -q %s" % (count, interval, target), timeout=count + 240)
        m = re.search(r"(\d+) packets transmitted, (\d+) packets received", out)
        assert m, "no ping summary from %s: %s" % (self.name, out)
        return int(m.group(1)), int(m.group(2)), out

    def destroy(self):
        if self.domid is not None:
            self.xen.sh("xl destroy %s" % self.name, timeout=120)


class MultiVifGuest(Guest):
    """A guest with `n` vifs on xvif (eth0..ethN-1, one queue each), guest
    number `index` on the /24 `net`: ethK has address net.(10 + 10*index + K)
    (eth0's from the command line, the others set by `number`)."""

    def __init__(self, xen, name, index, n, net="10.0.5"):
        self.index, self.nvifs, self.net = index, n, net
        super().__init__(xen, name, self.addr(0), self.mac_of(0), queues=1)

    def addr(self, k):
        return "%s.%d" % (self.net, 10 + self.index * 10 + k)

    def mac_of(self, k):
        return "00:16:3e:05:%02x:%02x" % (self.index, k)

    def create(self):
        record_console_crashes(self.xen, self.name)
        self.xen.sh("rm -f %s; : > /var/log/xen/xl-%s.log" % (self.console, self.name), quiet=True)
        vifs = ",".join('"backend=xvif,mac=%s"' % self.mac_of(k) for k in range(self.nvifs))
        xl_create(self.xen, "/guests/guest-linux-pv.cfg 'name=\"%s\"' 'extra=\"console=hvc0 rdinit=/init "
                            "ip=%s/24 nfqueues=1\"' 'vif=[%s]'" % (self.name, self.addr(0), vifs), self.name)
        self.wait_up()
        self.number()

    def number(self):
        """Gives eth1..ethN-1 their own addresses (the image's hotplug loop
        gave them eth0's) and makes each answer ARP only for its own."""
        # promote_secondaries: taking eth0's address off ethN must not take
        # ethN's own (added after it, so secondary) with it.
        script = ["echo %s > /proc/sys/net/ipv4/conf/all/%s" % kv
                  for kv in (("1", "arp_ignore"), ("2", "arp_announce"), ("1", "promote_secondaries"))]
        for k in range(1, self.nvifs):
            script.append("for i in $(seq 1 60); do [ -e /sys/class/net/eth{k} ] && break; sleep 1; done; "
                          "ip addr add {a}/24 dev eth{k}; ip link set eth{k} up; "
                          "ip addr del {ip0}/24 dev eth{k} 2>/dev/null".format(k=k, a=self.addr(k),
                                                                               ip0=self.addr(0)))
        # The hotplug loop checks every second: one that saw ethN without an
        # address may add eth0's just after; take it away again.
        script.append("sleep 2")
        script += ["ip addr del %s/24 dev eth%d 2>/dev/null" % (self.addr(0), k) for k in range(1, self.nvifs)]
        script.append("ip -4 addr show")
        script.append("ip -4 addr show | grep -c 'inet %s.'" % self.net)
        rc, out = self.run("; ".join(script), timeout=300)
        assert last_line(out) == str(self.nvifs), "%s: addresses not as planned:\n%s" % (self.name, out)

    def ping_each_vif(self, target):
        """Pings `target` 3 times out of every ethN; returns ({K: replies},
        the output)."""
        cmd = "; ".join("echo eth%d $(ping -I eth%d -c 3 -i 0.3 -W 10 -q %s | grep -o '[0-9]* packets received')"
                        % (k, k, target) for k in range(self.nvifs))
        rc, out = self.run(cmd, timeout=600)
        got = {}
        for m in re.finditer(r"eth(\d+) (\d+) packets received", out):
            got[int(m.group(1))] = int(m.group(2))
        return got, out


def xenstore_kv(xen, path):
    """A node holding `key=value ...` (xvif's counters) as a dict; {} when
    the node is missing."""
    rc, out = xen.sh("xenstore-read %s 2>/dev/null" % path, quiet=True)
    return dict(kv.split("=", 1) for kv in last_line(out).split() if "=" in kv) if rc == 0 else {}


def vif_counters(xen, d0, guest):
    """xvif's published counters for each of the guest's vifs: {devid: dict}."""
    return {k: xenstore_kv(xen, "/local/domain/%d/data/xvif/vifs/vif%d_%d" % (d0, guest.domid, k))
            for k in range(guest.nvifs)}


def resources(xen, d0):
    return xenstore_kv(xen, "/local/domain/%d/data/xvif-resources" % d0)
