#!/usr/bin/env python3
"""Summary of blend_loso.sh (docs/experiments/table7.md): per candidate
blend weight, the mean Spearman over every held-out source of every task
(each space, and both), with its standard error, and the weight the
one-standard-error rule picks (the smallest weight within one SE of the
best: the GNN is the paper's model, so ties go towards it).

usage: blend_loso_summary.py OUT_DIR
"""

import collections
import json
import math
import os
import sys


def main(folder):
    scores = collections.defaultdict(lambda: collections.defaultdict(list))
    for space in ("nb201", "fbnet"):
        path = os.path.join(folder, space + ".json")
        if not os.path.exists(path):
            continue
        for run in json.load(open(path))["runs"]:
            w = float(run["method"].split("@")[1])
            for o in run["outcomes"]:
                scores[space][w].append(o["spearman"])
                scores["both"][w].append(o["spearman"])
    print("| weight | " + " | ".join(f"{s} (n)" for s in scores) + " |")
    print("|---|" + "---|" * len(scores))
    weights = sorted({w for s in scores.values() for w in s})
    for w in weights:
        cells = []
        for s in scores.values():
            v = s[w]
            mean = sum(v) / len(v)
            se = math.sqrt(sum((x - mean) ** 2 for x in v) / max(len(v) - 1, 1) / len(v))
            cells.append(f"{mean:.4f} ± {se:.4f} ({len(v)})")
        print(f"| {w:g} | " + " | ".join(cells) + " |")
    for name, s in scores.items():
        means = {w: sum(v) / len(v) for w, v in s.items()}
        best = max(means, key=means.get)
        # Paired SE of the difference to the best weight.
        picks = []
        for w in sorted(s):
            d = [a - b for a, b in zip(s[best], s[w])]
            md = sum(d) / len(d)
            se = math.sqrt(sum((x - md) ** 2 for x in d) / max(len(d) - 1, 1) / len(d))
            if md <= se:
                picks.append(w)
        print(f"{name}: best mean at w = {best:g}; one-SE (paired) pick: w = {min(picks):g}")


if __name__ == "__main__":
    main(sys.argv[1])
