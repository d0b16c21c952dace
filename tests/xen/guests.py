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


def domid(xen, name):
    rc, out = xen.sh("xl domid %s 2>/dev/null" % name, quiet=True)
    return int(last_line(out)) if rc == 0 and last_line(out).isdigit() else None


def wait_until(what, fn, timeout=120, interval=1.0):
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("timed out after %ds waiting for %s" % (timeout, what))
        time.sleep(interval)


def xl_create(xen, args, name, timeout=300):
    rc, out = xen.sh("xl create " + args, timeout=timeout)
    # xl 4.17 under the nested emulator sometimes dies at exit (a libxl
    # mutex assertion, or a segfault in libgcc_s) after building the domain:
    # judge by the domain itself.
    if rc != 0 and domid(xen, name) is None:
        raise AssertionError("xl create failed (rc=%d): %s" % (rc, out[-2000:]))
    return out


class Guest:
    def __init__(self, xen, name, ip, mac, backend="xvif", queues=None):
        """queues: netfront's max_queues (None: its default, one per vCPU)."""
        self.xen, self.name, self.ip, self.mac, self.backend = xen, name, ip, mac, backend
        self.queues = queues
        self.n = 0

    @property
    def console(self):
        return "/var/log/xen/console/guest-%s.log" % self.name

    @property
    def domid(self):
        return domid(self.xen, self.name)

    def create(self):
        self.xen.sh("rm -f %s" % self.console, quiet=True)
        nfq = " nfqueues=%d" % self.queues if self.queues else ""
        xl_create(self.xen, "/guests/guest-linux-pv.cfg 'name=\"%s\"' 'extra=\"console=hvc0 rdinit=/init ip=%s/24%s\"' "
                            "'vif=[\"backend=%s,mac=%s\"]'" % (self.name, self.ip, nfq, self.backend, self.mac), self.name)
        self.wait_up()

    def wait_up(self, timeout=240):
        wait_until("%s's agent and eth0" % self.name, lambda: self.grep("XVIF-AGENT-UP") and self.grep("XVIF-DOMU-UP"),
                   timeout=timeout, interval=2)

    FAULTS = "-e 'segfault at' -e 'general protection' -e Aborted"

    def faults(self):
        """User-space crashes (segfault / GP fault / abort) on the guest's
        console. Nested Xen PV under QEMU TCG corrupts the memory of a guest
        receiving heavy traffic now and then, whichever driver domain serves
        it (seen with xvif and with Linux netback alike)."""
        rc, out = self.xen.sh("grep -c %s %s 2>/dev/null" % (self.FAULTS, self.console), quiet=True)
        return int(last_line(out)) if last_line(out).isdigit() else 0

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
