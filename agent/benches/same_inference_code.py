#!/usr/bin/env python3
# Usage: python3 agent/benches/same_inference_code.py BEFORE_UNSTRIPPED AFTER_UNSTRIPPED
"""Compare the code of inference crates between two unstripped ELF builds.

For every function symbol whose demangled name mentions one of the crates
below, compare (name -> sorted list of sizes). Prints how many match.
"""
import collections, subprocess, sys

CRATES = ("tract", "ndarray", "rustfft", "matrixmultiply", "nasflat_agent::timing",
          "nasflat_agent::tract_engine", "half", "num_traits")

def table(path):
    out = subprocess.run(["aarch64-linux-gnu-nm", "-S", "--demangle=rust", path],
                         capture_output=True, text=True, check=True).stdout
    t = collections.defaultdict(list)
    for line in out.splitlines():
        p = line.split(" ", 3)
        if len(p) < 4 or p[2].lower() != "t":
            continue
        if any(c in p[3] for c in CRATES):
            t[p[3]].append(int(p[1], 16))
    return {k: sorted(v) for k, v in t.items()}

a, b = table(sys.argv[1]), table(sys.argv[2])
common = set(a) & set(b)
same = sum(1 for k in common if a[k] == b[k])
bytes_a = sum(sum(v) for v in a.values()); bytes_b = sum(sum(v) for v in b.values())
print(f"inference-crate functions: {len(a)} vs {len(b)} names, {len(common)} common, "
      f"{same} with identical sizes; total {bytes_a:,} vs {bytes_b:,} bytes")
diff = [k for k in common if a[k] != b[k]]
for k in sorted(diff, key=lambda k: -abs(sum(a[k]) - sum(b[k])))[:15]:
    print(f"  {sum(a[k]):>8} -> {sum(b[k]):>8}  {k[:150]}")
only_a = set(a) - set(b); only_b = set(b) - set(a)
print(f"only in first: {len(only_a)} ({sum(sum(a[k]) for k in only_a):,} B); only in second: {len(only_b)} ({sum(sum(b[k]) for k in only_b):,} B)")
for k in list(only_a)[:5]: print("  -", k[:150])
for k in list(only_b)[:5]: print("  +", k[:150])
