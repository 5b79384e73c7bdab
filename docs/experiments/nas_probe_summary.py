#!/usr/bin/env python3
"""Summary of `nas` JSON runs (docs/experiments/nas.md, "Probed search").

Reads every DIR/<device>-<plan>.json written by nas_probe_loso.sh (or any
`nas --json` files named <device>-<variant>.json) and prints, per (variant,
predictor): searches, mean regret over (device, budget) pairs, the worst
pair, the violation rate and how many answers were measured.

usage: nas_probe_summary.py DIR
"""

import collections
import glob
import json
import os
import sys


def main(folder):
    groups = collections.defaultdict(list)
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        name = os.path.basename(path)[:-5]
        if name in ("budgets", "loso_tasks") or "-" not in name:
            continue
        variant = name.rsplit("-", 1)[1]
        for r in json.load(open(path))["runs"]:
            mode = r["mode"] if r["mode"] != "probed" else "probed " + variant
            groups[(mode, r["predictor"])].append(r)
    print("| variant | predictor | searches | devices | mean regret | worst pair | pairs above 1.0 | violations | measured answers |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key in sorted(groups):
        runs = groups[key]
        pairs = collections.defaultdict(list)
        for r in runs:
            pairs[(r["device"], r["constraint_ms"])].append(r)
        regrets = []
        for rs in pairs.values():
            acc = [r["oracle_accuracy"] - r["accuracy"] for r in rs if r["accuracy"] is not None]
            regrets.append(sum(acc) / len(acc) if acc else float("nan"))
        violations = sum(r["violated"] for r in runs) / len(runs)
        measured = sum(1 for r in runs if r.get("measured"))
        devices = len({r["device"] for r in runs})
        print(
            f"| {key[0]} | {key[1]} | {len(runs)} | {devices} | {sum(regrets) / len(regrets):.3f} "
            f"| {max(regrets):.2f} | {sum(g > 1.0 for g in regrets)} | {100 * violations:.1f}% | {measured} |"
        )


if __name__ == "__main__":
    main(sys.argv[1])
