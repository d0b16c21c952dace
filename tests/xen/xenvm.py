r"""Boot a real Xen 4.17 + Linux PV dom0 inside QEMU TCG and drive dom0's shell.

    from xenvm import XenVM
    with XenVM(guest_files=[("/path/xvif.elf", "xvif.elf"), (b"cfg text", "my.cfg")]) as vm:
        rc, out = vm.sh("xl info")
        rc, out = vm.xl_create("/guests/my.cfg", 'extra="x=1"', name="xvif")
        vm.wait_for("xl dmesg", r"^\(d1\) .*hello", timeout=60)

* The image (xen, vmlinuz, dom0.cpio.gz, domU.cpio.gz) comes from
  $XVIF_XEN_IMAGE, or else from `build-image.sh` next to this file (which
  prints the cached image directory in about a second when nothing changed).
* Extra files for dom0 land under /guests/: they are packed at run time into a
  small cpio.gz that is appended to the cached dom0.cpio.gz (the kernel unpacks
  concatenated archives), so the image cache stays valid. A file named
  autorun.sh is run by dom0's /init after XVIF-DOM0-READY.
* QEMU runs under `timeout` (hard limit $XVIF_XEN_HARD_TIMEOUT, default 5400 s)
  and is killed by PID on close(), at interpreter exit and on SIGTERM/SIGHUP.
* dom0's console is the serial line (Xen's com1, dom0 on hvc0 multiplexed into
  it). Commands run with unique begin/end markers; sh() returns (rc, output).
  Xen keeps only 128 bytes of serial input for dom0 and drops the rest
  silently, so at most one short line is ever in flight: long or multi-line
  commands are uploaded in acknowledged base64 pieces and then sourced.
* diagnostics() collects the tail of `xl dmesg`, of the serial console (Xen +
  dom0), every guest console log under /var/log/xen/console/ and the xl logs.
* Timings (QEMU start to Xen banner / dom0 kernel / dom0 READY, per command)
  are kept in .timings and written to timings.json in the run's log dir.

Environment: XVIF_XEN_IMAGE, XVIF_CACHE, XVIF_LOG_DIR, XVIF_XEN_HARD_TIMEOUT,
XVIF_XEN_BOOT_TIMEOUT, XVIF_XEN_ECHO=1 (copy the serial console to stderr live),
XVIF_XEN_EXTRA (more Xen command-line options), XVIF_QEMU_ACCEL (default
tcg,thread=multi), XVIF_QEMU_CPU (default max,-xsave),
XVIF_QEMU (default /usr/bin/qemu-system-x86_64).
"""

import atexit
import gzip
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import weakref

import pexpect

import outernet

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
QEMU = os.environ.get("XVIF_QEMU", "/usr/bin/qemu-system-x86_64")
CACHE = os.environ.get("XVIF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "xvif")

# The outer QEMU's CPU model. Plain `max` corrupts user space in PV dom0
# and PV guests under load: TCG raises no #NM for XSAVE under Xen's lazy FPU
# switching. Without xsave it does not; and unlike qemu64,+svm,+npt it has
# not shown the nested-SVM triple fault in a whole suite run (README.md in
# this directory has the numbers).
QEMU_CPU = os.environ.get("XVIF_QEMU_CPU", "max,-xsave")

XEN_CMDLINE = ("console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M dom0_max_vcpus=2 "
               "loglvl=all guest_loglvl=all noreboot console_timestamps=boot")
DOM0_CMDLINE = "console=hvc0 earlyprintk=xen rdinit=/init"
READY = "XVIF-DOM0-READY"
# The emulated IOMMU of XenVM(iommu=...), placed before every other PCI
# device (QEMU wants the IOMMU first so the devices after it are behind it).
IOMMU_DEVICE = {
    "intel": ["-device", "intel-iommu,intremap=on,eim=on"],
    "amd": ["-device", "amd-iommu,intremap=on"],
}
PROMPT = "dom0# "

# Seen on the console when something died: stop waiting at once.
FATAL_PATTERNS = [
    r"Panic on CPU \d+",
    r"Kernel panic - not syncing[^\r\n]*",
    r"Reboot in five seconds",
    r"FATAL TRAP[^\r\n]*",
    r"Hardware Dom0 crashed[^\r\n]*",
]
# Xen's and guests' (port 0xe9) lines that interleave with command output.
XEN_LINE = re.compile(r"^\s*\((XEN|d\d+)\)")
# Xen writes each of its lines whole (with console_timestamps), but it can
# land in the middle of one of dom0's lines: "...guard page(d26) [  901.9] x\n".
XEN_INLINE = re.compile(r"\((?:XEN|d\d+)\) \[ *\d+\.\d+\] [^\n]*\n")


# Xen buffers only 128 bytes of serial input for dom0 and silently drops the
# rest; only one line is ever in flight, so lines stay well below that.
MAX_TYPED = 80           # longer commands are uploaded in pieces, then sourced
PIECE = 88               # base64 characters per upload line
KEEP_RUNS = 20           # default log dirs kept under $XVIF_CACHE/xen-runs


def _prune_runs(runs, keep):
    try:
        dirs = sorted((os.path.join(runs, d) for d in os.listdir(runs)), key=os.path.getmtime)
    except OSError:
        return
    for d in dirs[:max(0, len(dirs) - keep + 1)]:
        shutil.rmtree(d, ignore_errors=True)


class XenVMError(Exception):
    pass


_ESCAPES = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|[@-Z\\-_])|[\x00-\x08\x0b-\x1f\x7f]")


def strip_escapes(text):
    """Text without terminal escape sequences, CRs and other control bytes."""
    return _ESCAPES.sub("", text.replace("\r\n", "\n"))


def run_build_image():
    """Path of the image dir: $XVIF_XEN_IMAGE or the output of build-image.sh."""
    env = os.environ.get("XVIF_XEN_IMAGE")
    if env:
        return env
    p = subprocess.run(["bash", os.path.join(HERE, "build-image.sh")], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise XenVMError("build-image.sh failed (rc=%d)" % p.returncode)
    return p.stdout.strip().splitlines()[-1]


# ---------------------------------------------------------------- cpio (newc)

def _newc(name, mode, data=b"", ino=1, mtime=0):
    nameb = name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(mode) else 1
    fields = [ino, mode, 0, 0, nlink, mtime, len(data), 0, 0, 0, 0, len(nameb), 0]
    hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
    out = hdr + nameb
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(data) % 4)
    return out


def make_cpio_gz(entries):
    """entries: list of (dest path relative to /, bytes, mode bits). Parent
    directories are added. Returns gzip'd newc archive bytes."""
    buf = io.BytesIO()
    ino = 0x7000
    dirs = set()
    mtime = int(time.time())
    for dest, data, mode in entries:
        parts = dest.strip("/").split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in dirs:
                dirs.add(d)
                ino += 1
                buf.write(_newc(d, stat.S_IFDIR | 0o755, ino=ino, mtime=mtime))
        ino += 1
        buf.write(_newc(dest.strip("/"), stat.S_IFREG | mode, data, ino=ino, mtime=mtime))
    buf.write(_newc("TRAILER!!!", 0, ino=0))
    return gzip.compress(buf.getvalue(), compresslevel=6, mtime=0)


def _guest_entries(guest_files):
    """guest_files items: "path" (-> /guests/basename), (path, "name") or
    (bytes content, "name"); names are relative to /guests/."""
    entries = []
    for item in guest_files:
        if isinstance(item, (str, os.PathLike)):
            src, name = os.fspath(item), os.path.basename(os.fspath(item))
        else:
            src, name = item
        if isinstance(src, (bytes, bytearray)):
            data = bytes(src)
            mode = 0o755 if name.endswith(".sh") else 0o644
        else:
            src = os.fspath(src)
            if not os.path.isfile(src):
                raise XenVMError("guest file %s does not exist" % src)
            with open(src, "rb") as f:
                data = f.read()
            mode = 0o755 if os.access(src, os.X_OK) else 0o644
        entries.append(("guests/" + name.lstrip("/"), data, mode))
    return entries


# ---------------------------------------------------------------- cleanup registry

_LIVE = weakref.WeakSet()
_HANDLERS_INSTALLED = False


def _close_all():
    for vm in list(_LIVE):
        try:
            vm.close(quiet=True)
        except Exception:
            pass


def _install_handlers():
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED:
        return
    _HANDLERS_INSTALLED = True
    atexit.register(_close_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            prev = signal.getsignal(sig)
        except ValueError:
            continue

        def handler(signum, frame, prev=prev):
            _close_all()
            if callable(prev):
                prev(signum, frame)
            else:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
        try:
            signal.signal(sig, handler)
        except ValueError:       # not in the main thread
            pass


class _Tee:
    """pexpect logfile: serial log on disk, optionally copied to stderr."""

    def __init__(self, path, echo):
        self.f = open(path, "w", encoding="utf-8", errors="replace")
        self.echo = echo

    def write(self, s):
        self.f.write(s)
        self.f.flush()
        if self.echo:
            sys.stderr.write(s)
            sys.stderr.flush()

    def flush(self):
        self.f.flush()

    def close(self):
        self.f.close()


# ---------------------------------------------------------------- the VM

class XenVM:
    def __init__(self, guest_files=(), image_dir=None, log_dir=None, hard_timeout=None,
                 xen_extra="", dom0_extra="", mem="3G", smp=2, qemu=QEMU, echo=None, cpu=None, monitor=False,
                 outer_net=False, iommu=None):
        """outer_net=True: a wire to a peer outside Xen (outernet.py): an
        e1000 at 00:05.0 on a tap in a namespace of its own with dnsmasq,
        enslaved to xenbr1 in dom0, and a QMP socket for set_link(); the
        QEMU process then runs inside that namespace.

        iommu="intel" or "amd" (or $XVIF_XEN_IOMMU): the outer machine is a
        q35 with QEMU's emulated IOMMU of that kind (VT-d with interrupt
        remapping, or AMD-Vi), Xen gets iommu=verbose, and the outer wire
        (implied) is left to passthrough: dom0 (`xvif_outer=pt` on its
        command line) neither binds the e1000 nor builds xenbr1, so
        `xl pci-assignable-add 0000:00:05.0` can hand it to a guest."""
        self.image = image_dir or run_build_image()
        for f in ("xen", "vmlinuz", "dom0.cpio.gz"):
            if not os.path.isfile(os.path.join(self.image, f)):
                raise XenVMError("image %s lacks %s (run tests/xen/build-image.sh)" % (self.image, f))
        self.guest_files = list(guest_files)
        self.hard_timeout = int(hard_timeout or os.environ.get("XVIF_XEN_HARD_TIMEOUT", 5400))
        self.iommu = iommu or os.environ.get("XVIF_XEN_IOMMU") or None
        if self.iommu not in (None, "intel", "amd"):
            raise XenVMError("iommu=%r: expected intel or amd" % self.iommu)
        if self.iommu:
            outer_net = True
            xen_extra = "iommu=verbose " + xen_extra
            dom0_extra = ("xvif_outer=pt " + dom0_extra).strip()
        xen_extra = (xen_extra + " " + os.environ.get("XVIF_XEN_EXTRA", "")).strip()
        self.xen_cmdline = (XEN_CMDLINE + " " + xen_extra).strip()
        self.dom0_cmdline = (DOM0_CMDLINE + " " + dom0_extra).strip()
        self.mem, self.smp, self.qemu = mem, smp, qemu
        self.cpu = cpu or QEMU_CPU
        self.monitor = monitor
        self.outer_net = outer_net
        self.outer = None              # outernet.OuterNet once started
        self.echo = os.environ.get("XVIF_XEN_ECHO") == "1" if echo is None else echo
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.log_dir = log_dir or os.environ.get("XVIF_LOG_DIR")
        if not self.log_dir:
            runs = os.path.join(CACHE, "xen-runs")
            self.log_dir = os.path.join(runs, "%s-%d-%d" % (stamp, os.getpid(), id(self) % 10000))
            _prune_runs(runs, keep=KEEP_RUNS)
        os.makedirs(self.log_dir, exist_ok=True)
        self.serial_log = os.path.join(self.log_dir, "serial.log")
        self.p = None
        self.qemu_pid = None
        self.timings = []          # (label, seconds)
        self.n = 0
        self.ready = False
        self.t0 = None
        self.initrd = None
        self.auto_diagnostics = True   # print diagnostics on failures
        self.crashes = []              # crash lines found in logs that are gone now (guests.py)
        self.verbose = os.environ.get("XVIF_XEN_VERBOSE") == "1" or self.echo

    # ------------------------------------------------------------ lifecycle
    def __enter__(self):
        self.boot()
        return self

    def __exit__(self, *exc):
        if exc[0] is not None and self.p is not None:
            self.print_diagnostics("exception: %s" % exc[1])
        self.close()

    def t(self):
        return time.time() - self.t0

    def note(self, msg):
        """Harness progress: always into harness.log in the run's log dir; on
        stderr only with XVIF_XEN_VERBOSE=1 (or echo), so a failing test's
        report is not buried under command-by-command polling."""
        line = "[xenvm %7.1fs] %s" % (self.t() if self.t0 else 0.0, msg)
        try:
            with open(os.path.join(self.log_dir, "harness.log"), "a") as f:
                f.write(line + "\n")
        except OSError:
            pass
        if self.verbose:
            print(line, file=sys.stderr, flush=True)

    def serial_size(self):
        try:
            return os.path.getsize(self.serial_log)
        except OSError:
            return 0

    def serial_since(self, offset):
        """Serial console text (Xen + dom0) from byte `offset` on."""
        try:
            with open(self.serial_log, "rb") as f:
                f.seek(offset)
                return strip_escapes(f.read().decode("utf-8", "replace"))
        except OSError:
            return ""

    def timing(self, label, seconds):
        self.timings.append((label, round(seconds, 2)))

    def _build_initrd(self):
        base = os.path.join(self.image, "dom0.cpio.gz")
        self.initrd = os.path.join(self.log_dir, "dom0-run.cpio.gz")
        entries = _guest_entries(self.guest_files)
        with open(self.initrd, "wb") as out, open(base, "rb") as inp:
            shutil.copyfileobj(inp, out)
            if entries:
                out.write(b"\0" * (-out.tell() % 4))
                out.write(make_cpio_gz(entries))
        return [e[0] for e in entries]

    def start(self):
        if self.p is not None:
            raise XenVMError("already started")
        if not os.access(self.qemu, os.X_OK):
            raise XenVMError("%s missing: run tests/xen/setup.sh" % self.qemu)
        placed = self._build_initrd()
        for path in (self.image, self.initrd):
            if "," in path or " " in path:
                raise XenVMError("path %r has a comma or space: QEMU's -initrd cannot take it" % path)
        args = [
            "--signal=TERM", "--kill-after=10", str(self.hard_timeout), self.qemu,
            "-machine", "q35" if self.iommu else "pc",
        ] + IOMMU_DEVICE.get(self.iommu, []) + [
            "-accel", os.environ.get("XVIF_QEMU_ACCEL", "tcg,thread=multi"), "-cpu", self.cpu,
            "-smp", str(self.smp), "-m", self.mem,
            "-display", "none", "-monitor", "none",
            # signal=off: a Ctrl-C we send must reach dom0, not kill QEMU.
            # monitor=True (make run): the QEMU monitor shares the console,
            # so Ctrl-A X quits and Ctrl-A C switches to the monitor.
            "-chardev", "stdio,id=con0,signal=off" + (",mux=on" if self.monitor else ""),
            "-serial", "chardev:con0",
        ] + (["-mon", "chardev=con0,mode=readline"] if self.monitor else []) + [
            "-nic", "none", "-no-reboot",
            "-kernel", os.path.join(self.image, "xen"),
            "-append", self.xen_cmdline,
            "-initrd", "%s %s,%s" % (os.path.join(self.image, "vmlinuz"), self.dom0_cmdline, self.initrd),
        ]
        command = "timeout"
        if self.outer_net:
            self.qmp_path = os.path.join(self.log_dir, "qmp.sock")
            args += outernet.qemu_args(self.qmp_path)
            self.outer = outernet.OuterNet(self.log_dir)
            # QEMU opens the tap in the namespace that holds it
            wrapped = self.outer.wrap(["timeout"] + args)
            command, args = wrapped[0], wrapped[1:]
        self.cmdline = command + " " + " ".join("'%s'" % a if " " in a else a for a in args)
        self.log = _Tee(self.serial_log, self.echo)
        self.log.write("# %s\n" % self.cmdline)
        self.t0 = time.time()
        self.p = pexpect.spawn(command, args, encoding="utf-8", codec_errors="replace",
                               timeout=60, maxread=65536, searchwindowsize=200000,
                               dimensions=(50, 250), echo=False)
        self.p.logfile_read = self.log
        _LIVE.add(self)
        _install_handlers()
        self.qemu_pid = self._find_qemu_pid()
        self.note("QEMU started (timeout pid %d, qemu pid %s), log dir %s%s" % (
            self.p.pid, self.qemu_pid, self.log_dir,
            "; /guests/: " + ", ".join(p[len("guests/"):] for p in placed) if placed else ""))

    def _find_qemu_pid(self):
        """PID of the QEMU that our `timeout` started (its only child)."""
        for _ in range(50):
            try:
                with open("/proc/%d/task/%d/children" % (self.p.pid, self.p.pid)) as f:
                    kids = f.read().split()
                if kids:
                    return int(kids[0])
            except OSError:
                return None
            time.sleep(0.02)
        return None

    def boot(self, timeout=None):
        """Start QEMU and wait for dom0's READY marker and shell."""
        timeout = float(timeout or os.environ.get("XVIF_XEN_BOOT_TIMEOUT", 900))
        self.start()
        deadline = time.time() + timeout
        milestones = [
            ("xen_banner", r"Xen version 4\.\d+"),
            ("dom0_kernel", r"Linux version \d"),
            ("dom0_ready", READY + r" uptime=[0-9.]+"),
        ]
        pats = [re.compile(m[1]) for m in milestones] + [re.compile(p) for p in FATAL_PATTERNS]
        seen = set()
        try:
            while "dom0_ready" not in seen:
                left = deadline - time.time()
                if left <= 0:
                    raise pexpect.TIMEOUT("boot")
                i = self.p.expect(pats + [pexpect.EOF], timeout=left)
                if i < len(milestones):
                    label = milestones[i][0]
                    if label not in seen:
                        seen.add(label)
                        self.timing("qemu_start_to_" + label, self.t())
                        self.note("%s (%s)" % (label, self.p.after.strip()))
                elif i < len(pats):
                    # let the console print the rest of the oops / panic
                    try:
                        self.p.expect(pexpect.TIMEOUT, timeout=5)
                    except Exception:
                        pass
                    raise XenVMError("fatal message on the console: %s" % self.p.after)
                else:
                    raise XenVMError("QEMU exited during boot (exit status %s)" % self._exit_status())
            self.p.expect_exact(PROMPT, timeout=max(60, deadline - time.time()))
        except (pexpect.TIMEOUT, XenVMError) as e:
            self.print_diagnostics("boot failed: %s" % e, shell=False, force=True)
            self.close(quiet=True)
            if isinstance(e, pexpect.TIMEOUT):
                raise XenVMError("dom0 not READY within %.0f s" % timeout) from None
            raise
        # Keep the tty echo on: with `stty -echo` busybox ash reads with plain
        # fgets(), and a SIGCHLD during that read ends the shell.
        self.ready = True
        # dom0's kernel warnings (the clocksource watchdog under emulation)
        # would land in the middle of command output on this console: keep
        # only errors and worse there; `dmesg` still has everything and the
        # diagnostics show its tail.
        rc, out = self.sh("dmesg -n 4", timeout=60, record=False)
        self.timing("qemu_start_to_dom0_shell", self.t())
        d = dict(self.timings)
        self.timing("xen_banner_to_dom0_ready",
                    d["qemu_start_to_dom0_ready"] - d.get("qemu_start_to_xen_banner", 0))
        self.note("dom0 READY: Xen banner %.1fs, dom0 kernel %.1fs, READY %.1fs after QEMU start" % (
            d.get("qemu_start_to_xen_banner", -1), d.get("qemu_start_to_dom0_kernel", -1),
            d.get("qemu_start_to_dom0_ready", -1)))
        return self

    def _exit_status(self):
        try:
            self.p.close(force=False)
        except Exception:
            pass
        if self.p.exitstatus == 124:
            return "124: hard timeout of %d s reached" % self.hard_timeout
        return self.p.exitstatus if self.p.exitstatus is not None else "signal %s" % self.p.signalstatus

    def alive(self):
        return self.p is not None and self.p.isalive()

    # ------------------------------------------------------------ commands
    def sh(self, cmd, timeout=300, check=False, raw=False, record=True, quiet=False):
        """Run a shell command in dom0's console shell. Returns (rc, output).

        Commands longer than MAX_TYPED characters or with several lines are
        written to a file in dom0 first and sourced (same shell, same effect).

        output has CRs removed and, unless raw=True, lines printed by Xen
        itself ("(XEN) ...") and by guests via port 0xe9 ("(dN) ...") that
        interleaved with the command's output are dropped. check=True raises
        XenVMError (after printing diagnostics) when rc != 0. A command that
        does not finish in `timeout` s raises as well (after a Ctrl-C)."""
        if not self.ready:
            raise XenVMError("dom0 is not ready")
        cmd = cmd.strip()
        start = time.time()
        if "\n" in cmd or len(cmd) > MAX_TYPED:
            # Too long to type safely: ship it in acknowledged base64 pieces,
            # then source it in this shell (same effect as typing it).
            self._upload(cmd.encode() + b"\n")
            self.n += 1
            n = self.n
            line = "_b %d;_r;_e %d $?" % (n, n)
        else:
            self.n += 1
            n = self.n
            sep = " " if cmd.endswith("&") else ";"
            line = "_b %d;%s%s_e %d $?" % (n, cmd, sep, n)
        self.p.sendline(line)
        try:
            # A guest's "(dN) ..." line can land right after the marker.
            self._expect(r"__XVB%d__[^\n]*\n" % n, timeout)
            self._expect(r"__XVE%d__ rc=(\d+)" % n, max(1, timeout - (time.time() - start)))
        except XenVMError as e:
            self.ready = False
            self.print_diagnostics("%s during: %s" % (e, cmd), shell=False)
            raise XenVMError("%s during: %s" % (e, cmd)) from None
        except pexpect.TIMEOUT:
            dt = time.time() - start
            self.timing("cmd timeout: " + cmd[:80], dt)
            self.note("TIMEOUT after %.0fs: %s" % (dt, cmd))
            self.p.send("\x03")      # Ctrl-C to the foreground command
            self._resync()
            self.print_diagnostics("command timed out: %s" % cmd)
            raise XenVMError("command timed out after %.0f s: %s" % (dt, cmd)) from None
        except pexpect.EOF:
            self.ready = False
            self.print_diagnostics("QEMU exited during: %s" % cmd, shell=False)
            raise XenVMError("QEMU exited during: %s" % cmd) from None
        rc = int(self.p.match.group(1))
        out = self.p.before.replace("\r", "")
        if not raw:
            out = XEN_INLINE.sub("", out)
            out = "\n".join(l for l in out.split("\n") if not XEN_LINE.match(l))
        dt = time.time() - start
        if record:
            self.timing(cmd[:120], dt)
        if not quiet:
            self.note("rc=%d %.1fs: %s" % (rc, dt, cmd[:160]))
        if check and rc != 0:
            self.print_diagnostics("rc=%d from: %s" % (rc, cmd))
            raise XenVMError("rc=%d from: %s\n%s" % (rc, cmd, out[-2000:]))
        return rc, out

    def _expect(self, pattern, timeout):
        """expect `pattern`, but fail at once on a panic / crash message."""
        pats = [re.compile(pattern)] + [re.compile(p) for p in FATAL_PATTERNS]
        i = self.p.expect(pats, timeout=timeout)
        if i > 0:
            what = self.p.after
            try:    # let the rest of the oops reach the log
                self.p.expect(pexpect.TIMEOUT, timeout=5)
            except pexpect.EOF:
                pass
            raise XenVMError("fatal message on the console: %s" % what.strip())
        return i

    def _resync(self, tries=3):
        for _ in range(tries):
            try:
                self.n += 1
                self.p.sendline("echo __XV''S%d__" % self.n)
                self.p.expect("__XVS%d__" % self.n, timeout=20)
                return True
            except pexpect.TIMEOUT:
                self.p.send("\x03")
            except pexpect.EOF:
                self.ready = False
                return False
        self.ready = False
        return False

    def wait_for(self, cmd, pattern, timeout=120, interval=1.0):
        """Repeat `cmd` until its output (raw: "(XEN)"/"(dN)" lines kept)
        matches regex `pattern` (re.M); returns the match or raises
        XenVMError (with diagnostics)."""
        deadline = time.time() + timeout
        start = time.time()
        rx = re.compile(pattern, re.M)
        while True:
            rc, out = self.sh(cmd, timeout=max(10, deadline - time.time()), raw=True, record=False,
                              quiet=True)
            m = rx.search(out)
            if m:
                self.timing("wait_for %r" % pattern, time.time() - start)
                self.note("%r seen after %.1fs" % (pattern, time.time() - start))
                return m
            if time.time() > deadline:
                self.print_diagnostics("%r not seen in %s within %.0f s" % (pattern, cmd, timeout))
                raise XenVMError("%r not seen within %.0f s in: %s\nlast output:\n%s" % (
                    pattern, timeout, cmd, strip_escapes(out)[-3000:]))
            time.sleep(interval)

    def xl_create(self, cfg, *overrides, name=None, timeout=300):
        """`xl create CFG [KEY=VALUE...]` (each override is passed as one
        shell-quoted word, e.g. 'extra="ip=10.0.0.2/24"'). Returns (rc, out)."""
        words = [cfg] + ["'%s'" % o.replace("'", "'\\''") for o in overrides]
        return self.sh("xl create " + " ".join(words), timeout=timeout)

    def console(self, name, pattern, send=None, trigger=None, timeout=90):
        """Attaches to a domain's console with `xl console NAME` in dom0's
        foreground, as a person at the shell would; `trigger` is a dom0
        command run in the background a few seconds later (to make the
        domain print something), `send` a line typed into the console. Waits
        for regex `pattern`, leaves with Ctrl-], returns the text seen."""
        script = "(sleep 3; %s) >/dev/null 2>&1 &\nxl console %s\n" % (trigger or "true", name)
        self._upload(script.encode())
        self.n += 1
        n = self.n
        self.p.sendline("_b %d;_r;_e %d $?" % (n, n))
        try:
            self._expect(r"__XVB%d__[^\n]*\n" % n, 30)
            if send:
                time.sleep(4)
                self.p.send(send + "\r")
            self._expect(pattern, timeout)
            seen = self.p.before + self.p.after
        except pexpect.TIMEOUT:
            seen = self.p.before
            self.p.send("\x1d")
            self._resync()
            raise XenVMError("%r not seen on `xl console %s` within %d s; it showed:\n%s" % (
                pattern, name, timeout, strip_escapes(seen)[-2000:])) from None
        self.p.send("\x1d")
        self._expect(r"__XVE%d__ rc=(\d+)" % n, 30)
        rc = int(self.p.match.group(1))
        if rc != 0:
            raise XenVMError("xl console %s ended with rc=%d" % (name, rc))
        return strip_escapes(seen)

    def _upload(self, data, timeout=60, tries=3):
        """Put `data` into dom0's /tmp/.xvc as base64, one short acknowledged
        line at a time (see MAX_TYPED), and check what arrived.

        The console's input path (outer QEMU's serial port, Xen's console,
        dom0's hvc) has changed a character of a piece under load: a run of
        2026-12-06 sourced an awk program whose base64 read `KSss` where
        `KSls` was sent. The pieces' md5 in dom0 is compared with what was
        sent; a mismatch is logged and the upload sent again."""
        import base64
        import hashlib
        b64 = base64.b64encode(data).decode()
        pieces = [b64[i:i + PIECE] for i in range(0, len(b64), PIECE)]
        want = hashlib.md5("".join(p + "\n" for p in pieces).encode()).hexdigest()
        for attempt in range(1, tries + 1):
            self._send_pieces(pieces, timeout)
            rc, out = self.sh("md5sum /tmp/.xvc", record=False, quiet=True)
            if rc == 0 and want in out:
                return
            self.note("upload to dom0 arrived changed (attempt %d of %d: md5 %s, sent %s); sending it again" % (
                attempt, tries, out.strip()[:40], want))
        raise XenVMError("upload to dom0 arrived changed %d times" % tries)

    def _send_pieces(self, pieces, timeout):
        for k, piece in enumerate([None] + pieces):
            self.n += 1
            if piece is None:
                self.p.sendline("_z %d" % self.n)
            else:
                self.p.sendline("_a %s %d" % (piece, self.n))
            try:
                self._expect(r"__XVA%d__" % self.n, timeout)
            except pexpect.TIMEOUT:
                self.p.send("\x03")
                self._resync()
                raise XenVMError("upload to dom0 stalled (piece %d of %d)" % (k, len(pieces))) from None

    def write_file(self, path, data):
        """Write a file inside dom0 through the console (base64 pieces)."""
        if isinstance(data, str):
            data = data.encode()
        self._upload(data)
        self.sh("_w %s" % path, record=False, quiet=True, check=True)

    def set_link(self, up):
        """The outer e1000's link up or down (QMP set_link; outer_net only)."""
        if self.outer is None:
            raise XenVMError("set_link needs XenVM(outer_net=True)")
        outernet.qmp(self.qmp_path, "set_link", {"name": outernet.NIC_ID, "up": bool(up)})
        self.note("outer NIC link %s" % ("up" if up else "down"))

    # ------------------------------------------------------------ diagnostics
    def serial_tail(self, lines=150):
        try:
            # newline="": keep "\r\r\n" from turning into blank lines
            with open(self.serial_log, encoding="utf-8", errors="replace", newline="") as f:
                text = f.read().replace("\r", "")
            return strip_escapes("\n".join(text.split("\n")[-lines:]))
        except OSError:
            return "(no serial log)"

    def diagnostics(self, lines=60, shell=True):
        """Text with: the serial console tail (Xen + dom0, taken first so it
        does not show the commands below), then from dom0: xl list, the
        guests' port-0xe9 lines and Xen's latest lines from `xl dmesg`, every
        guest console log under /var/log/xen/console/, the xl logs."""
        parts = ["----- serial console: Xen + dom0 (tail of %s)\n%s" % (
            self.serial_log, self.serial_tail(lines * 2))]
        if shell and self.ready and self.alive():
            script = (
                "echo '----- xl list'; xl list 2>&1; "
                "echo '----- xl dmesg: guest lines (port 0xe9)'; xl dmesg 2>&1 | grep -a '^(d[0-9]' | tail -n %d; "
                "echo '----- xl dmesg: last Xen lines'; xl dmesg 2>&1 | grep -av '^(d[0-9]' | tail -n %d; "
                "echo '----- dom0 dmesg (tail)'; dmesg 2>&1 | tail -n %d; "
                "for f in /var/log/xen/console/*.log /var/log/xen/xl-*.log; do "
                "[ -f \"$f\" ] || continue; echo \"----- $f (tail)\"; tail -n %d \"$f\"; done"
            ) % (lines, lines // 2, lines // 2, lines)
            try:
                rc, out = self.sh(script, timeout=60, raw=True, record=False, quiet=True)
                parts.append(strip_escapes(out).strip("\n"))
            except XenVMError as e:
                parts.append("(dom0 shell did not answer: %s)" % e)
        return "\n".join(parts)

    def print_diagnostics(self, why="", shell=True, force=False):
        """Print diagnostics() to stderr, unless auto_diagnostics is off (the
        pytest conftest attaches them to the failure report instead)."""
        if getattr(self, "_in_diag", False) or not (self.auto_diagnostics or force):
            return
        self._in_diag = True
        try:
            text = self.diagnostics(shell=shell)
            sys.stderr.write("\n===== xenvm diagnostics%s =====\n%s\n===== end of diagnostics =====\n" % (
                (": " + why) if why else "", text))
            sys.stderr.flush()
        finally:
            self._in_diag = False

    # ------------------------------------------------------------ teardown
    def close(self, quiet=False):
        if self.p is None:
            return
        p, self.p = self.p, None
        self.ready = False
        _LIVE.discard(self)
        # kill only the QEMU we started (by PID), then our `timeout` process
        for pid in (self.qemu_pid, p.pid):
            if pid and self._is_ours(pid, p.pid):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for _ in range(50):
            if not p.isalive():
                break
            time.sleep(0.1)
        if p.isalive():
            for pid in (self.qemu_pid, p.pid):
                if pid and self._is_ours(pid, p.pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        try:
            p.close(force=True)
        except Exception:
            pass
        try:
            self.log.close()
        except Exception:
            pass
        if self.initrd and os.path.exists(self.initrd):
            os.unlink(self.initrd)
        if self.outer is not None:
            self.outer.close()
            self.outer = None
        if self.t0:
            self.timing("total_qemu_lifetime", self.t())
        try:
            with open(os.path.join(self.log_dir, "timings.json"), "w") as f:
                json.dump(self.timings, f, indent=1)
        except OSError:
            pass
        if not quiet:
            self.note("QEMU stopped; timings:\n" + "\n".join(
                "    %8.1fs  %s" % (s, l) for l, s in self.timings))

    @staticmethod
    def _is_ours(pid, timeout_pid):
        """pid is our timeout process or its direct child (guards PID reuse)."""
        if pid == timeout_pid:
            return True
        try:
            with open("/proc/%d/stat" % pid) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            return ppid == timeout_pid
        except (OSError, ValueError, IndexError):
            return False


def repo_file(*parts):
    return os.path.join(REPO, *parts)


if __name__ == "__main__":
    # Manual use: python3 tests/xen/xenvm.py [guest files...]  -> boots, runs xl info,
    # then an interactive dom0 shell (Ctrl-] to quit).
    vm = XenVM(guest_files=sys.argv[1:], echo=False)
    vm.boot()
    rc, out = vm.sh("xl info")
    print(out)
    if sys.stdin.isatty():
        print("interactive dom0 shell; Ctrl-] quits", file=sys.stderr)
        vm.p.logfile_read = None
        vm.p.sendline("stty echo")
        vm.p.interact()
    vm.close()
