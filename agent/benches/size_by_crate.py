#!/usr/bin/env python3
# Usage: python3 agent/benches/size_by_crate.py UNSTRIPPED_AARCH64_AGENT [TOP]
"""Sum symbol sizes of an unstripped ELF by crate (nm --size-sort -S --demangle=rust)."""
import collections, re, subprocess, sys

path = sys.argv[1]
top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
nm = subprocess.run(["aarch64-linux-gnu-nm", "--size-sort", "-S", "--demangle=rust", path],
                    capture_output=True, text=True, check=True).stdout
sizes = collections.Counter()
kinds = collections.Counter()
total = 0
for line in nm.splitlines():
    parts = line.split(" ", 3)
    if len(parts) < 4:
        continue
    size = int(parts[1], 16)
    kind, name = parts[2], parts[3]
    total += size
    n = name.lstrip("<&*")
    n = re.sub(r"^(dyn |mut |const )+", "", n)
    if "::" in n:
        crate = n.split("::", 1)[0]
        crate = re.split(r"[ <>\[(,]", crate)[0] or "?"
    elif n.startswith("ring_core_") or n.startswith("ecp_nistz256") or "ring" in n:
        crate = "ring (C/asm)"
    elif n.startswith("__") or n.startswith("_"):
        crate = "[runtime: compiler-rt/unwind/musl internals]"
    else:
        crate = "[C: musl libc, asm kernels, ...]"
    sizes[crate] += size
    kinds[(crate, kind.lower())] += size
print(f"{'crate':50} {'bytes':>10}  text/rodata/data")
for crate, size in sizes.most_common(top):
    t = kinds[(crate, 't')]; r = kinds[(crate, 'r')]; d = kinds[(crate, 'd')] + kinds[(crate, 'b')]
    print(f"{crate:50} {size:>10,}  {t:,}/{r:,}/{d:,}")
print(f"{'total of symbols':50} {total:>10,}")
