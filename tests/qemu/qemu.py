"""Boots the real xvif ELF in QEMU (TCG) and collects its console.

Used by the QEMU tests and benchmarks. Every QEMU runs under `timeout` and is
killed by PID if it outlives its test.
"""
import os
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ELF = os.environ.get("XVIF_ELF", os.path.join(ROOT, "target/x86_64-unknown-none/release/xvif"))
QEMU = os.environ.get("QEMU", "qemu-system-x86_64")

# isa-debug-exit: QEMU exits with (value << 1) | 1 (see src/platform/exit.rs).
EXIT_SUCCESS = 33
EXIT_FAILURE = 35


def qemu_args(append="", machine="q35", mem="128M", extra=()):
    return [
        QEMU, "-machine", machine, "-accel", "tcg", "-cpu", "max", "-m", mem,
        "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
        "-nodefaults", "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
        "-kernel", ELF, "-append", append, *extra,
    ]


class Run:
    def __init__(self, code, out, seconds):
        self.code, self.out, self.seconds = code, out, seconds

    def __repr__(self):
        return "Run(code=%r, %.2fs)\n%s" % (self.code, self.seconds, self.out[-4000:])


def boot(append="", timeout=30, stdin=None, delay_input=1.5, **kw):
    """Boots xvif once; returns Run(code, console text, wall seconds)."""
    args = ["timeout", "--kill-after=5", str(timeout)] + qemu_args(append, **kw)
    t0 = time.monotonic()
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        if stdin is not None:
            time.sleep(delay_input)
            try:
                p.stdin.write(stdin.encode())
                p.stdin.flush()
            except BrokenPipeError:
                pass
        out, _ = p.communicate(timeout=timeout + 10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return Run(p.returncode, out.decode("utf-8", "replace"), time.monotonic() - t0)
