#!/usr/bin/env python3
"""Boot the nested Xen once, run repro guest variants, record triple faults.

usage: run.py [--cpu CPU] [--secs N] [--load] VARIANT...
  VARIANT = ELFNAME:TSCMODE[:COPIES[:CPUS]]   e.g. os20k:default  os20k:native:2:1
  (TSCMODE "default" = no tsc_mode line; CPUS = the xl cpus= hard affinity)
One JSON line per run in results.jsonl in the harness's run dir, beside serial.log.
"""
import argparse
import json
import os
import re
import sys
import time
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from xenvm import XenVM

HERE = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser()
ap.add_argument("--cpu", default=None)
ap.add_argument("--secs", type=int, default=90)
ap.add_argument("--load", action="store_true")
ap.add_argument("--tag", default="")
ap.add_argument("variants", nargs="+")
a = ap.parse_args()

elfs = sorted({v.split(":")[0] for v in a.variants})
CFG = b'''type = "pvh"
kernel = "/guests/repro.elf"
memory = 32
vcpus = 1
on_crash = "preserve"
on_poweroff = "preserve"
on_reboot = "preserve"
'''
files = [(os.path.join(HERE, e + ".elf"), e + ".elf") for e in elfs] + [(CFG, "repro.cfg")]
vm = XenVM(guest_files=files, cpu=a.cpu, hard_timeout=3000)
vm.boot()
out = open(os.path.join(vm.log_dir, "results.jsonl"), "a")
print("booted, cpu=%s log=%s" % (vm.cpu, vm.log_dir), flush=True)
rc, info = vm.sh("xl info | grep -e xen_version -e cpu_mhz -e hw_caps -e virt_caps")
print(info, flush=True)
rc, t = vm.sh("xl dmesg | grep -a -i -A12 -e 'SVM: Supported' | head -n 16", raw=True)
print(t, flush=True)
if a.load:
    vm.sh("(while :; do dd if=/dev/zero bs=1M count=300 2>/dev/null | gzip -1 >/dev/null; done) &"
          " echo $! > /tmp/load1")
    vm.sh("(while :; do dd if=/dev/zero bs=1M count=300 2>/dev/null | gzip -1 >/dev/null; done) &"
          " echo $! > /tmp/load2")

n = 0
for v in a.variants:
    parts = v.split(":")
    elf, mode = parts[0], parts[1]
    copies = int(parts[2]) if len(parts) > 2 else 1
    pin = parts[3] if len(parts) > 3 else None
    n += 1
    vm.sh("xl dmesg -c > /dev/null")
    off = vm.serial_size()
    names, domids = [], []
    t0 = time.time()
    for c in range(copies):
        name = "r%d%s" % (n, "abcd"[c])
        ov = ['name="%s"' % name, 'kernel="/guests/%s.elf"' % elf]
        if mode != "default":
            ov.append('tsc_mode="%s"' % mode)
        if pin is not None:
            ov.append('cpus="%s"' % pin)
        rc, o = vm.xl_create("/guests/repro.cfg", *ov)
        rc2, d = vm.sh("xl domid %s" % name)
        names.append(name)
        domids.append(d.strip())
    print("run %d %s tsc=%s copies=%d cpus=%s domids=%s" % (n, elf, mode, copies, pin, domids), flush=True)
    end = "?"
    while True:
        time.sleep(4)
        vm.sh("true", quiet=True)          # pexpect only logs the console while it reads
        s = vm.serial_since(off)
        if "Triple fault" in s:
            end = "TRIPLE"
            break
        if re.search(r"REPRO (EXC|UNEXPECTED|EBX)", s):
            end = "EXC"
            break
        if s.count("REPRO DONE") >= copies:
            end = "DONE"
            break
        if time.time() - t0 > a.secs:
            end = "TIMEOUT"
            break
    elapsed = time.time() - t0
    rc, lst = vm.sh("xl list")
    vm.sh("xl debug-keys s")
    time.sleep(1)
    rc, tscinfo = vm.sh("xl dmesg | grep -a -A3 -i -e 'tsc' | tail -n 40", raw=True)
    ctx = {}
    if end in ("TRIPLE", "EXC"):
        for name, d in zip(names, domids):
            rc, c = vm.sh("xenctx -a -s /dev/null %s 2>&1 | head -n 60; xenctx -a %s 2>&1 | head -n 60" % (d, d))
            ctx[name] = c
            rc, c = vm.sh("xenctx -a -S -s /dev/null %s 2>&1 | head -n 30" % d)
            ctx[name + "-stack"] = c
        off2 = vm.serial_size()
        vm.sh("xl debug-keys v")
        time.sleep(2)
        vm.sh("true")
        ctx["vmcb"] = vm.serial_since(off2)[-12000:]
    s = vm.serial_since(off)
    lines = [l for l in s.splitlines() if re.search(r"REPRO|Triple|\(XEN\) .*d(%s)v" % "|".join(domids), l)
             or re.search(r"RIP:|EFLAGS|rax:|rip|CS:", l)]
    prog = [l for l in s.splitlines() if "REPRO it=" in l]
    for name in names:
        vm.sh("xl destroy %s" % name)
    rec = dict(tag=a.tag, cpu=vm.cpu, load=a.load, elf=elf, tsc=mode, copies=copies, pin=pin, domids=domids,
               end=end, secs=round(elapsed), last_progress=prog[-copies:] if prog else [],
               xen_lines=lines[-80:], tscinfo=tscinfo[-3000:], xenctx=ctx, xl_list=lst, log=vm.log_dir)
    out.write(json.dumps(rec) + "\n")
    out.flush()
    print("  -> %s after %ds; last progress: %s" % (end, elapsed, prog[-copies:] if prog else None), flush=True)
    if end in ("TRIPLE", "EXC"):
        print("\n".join(lines[-60:]), flush=True)
        for k, c in ctx.items():
            print("xenctx %s:\n%s" % (k, c), flush=True)
    print("  tsc info:\n" + "\n".join(tscinfo.splitlines()[-12:]), flush=True)

if a.load:
    vm.sh("kill $(cat /tmp/load1) $(cat /tmp/load2)")
vm.close()
