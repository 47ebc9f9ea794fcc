#!/usr/bin/env python3
"""Disk-stall probe: a 4 KB pwrite and an fdatasync every 5 ms for SECS seconds on a file in DIR
(default /tmp), then one line with the fdatasync latency p50 / p99 / max. Run it beside a benchmark
to tell the disk's stalls from the server's. Usage: scripts/bench/fsprobe.py SECS [DIR]"""
import os
import sys
import time

secs = float(sys.argv[1]) if len(sys.argv) > 1 else 8.0
path = os.path.join(sys.argv[2] if len(sys.argv) > 2 else "/tmp", f"fsprobe-{os.getpid()}.dat")
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
try:
    end, took, n = time.time() + secs, [], 0
    while time.time() < end and n < 100_000:
        t = time.perf_counter()
        os.pwrite(fd, b"x" * 4096, (n % 256) * 4096)
        os.fdatasync(fd)
        took.append((time.perf_counter() - t) * 1000)
        n += 1
        time.sleep(0.005)
finally:
    os.close(fd)
    os.unlink(path)
took.sort()
print(f"fsprobe n={n} p50={took[len(took) // 2]:.2f}ms p99={took[int(len(took) * 0.99)]:.2f}ms max={took[-1]:.1f}ms")
