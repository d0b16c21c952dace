#!/usr/bin/env python3
"""Boot-to-ready time of the real ELF under QEMU TCG: median of N runs.

Prints xvif's own figure (entry -> ready, from its log) and the wall time of
the whole QEMU process (firmware, boot, power-off) for each run.
"""
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "qemu"))
from qemu import EXIT_SUCCESS, boot  # noqa: E402

n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
inner, wall = [], []
for _ in range(n):
    r = boot("poweroff=ready")
    if r.code != EXIT_SUCCESS:
        sys.exit("boot failed: %r" % r)
    m = re.search(r"xvif ready: (\d+\.\d+) ms after entry", r.out)
    inner.append(float(m.group(1)))
    wall.append(r.seconds * 1000)
print("boot (QEMU TCG, q35, 128 MiB, %d runs): entry->ready median %.1f ms (min %.1f, max %.1f); "
      "QEMU start->exit median %.0f ms" % (n, statistics.median(inner), min(inner), max(inner),
                                           statistics.median(wall)))
