#!/usr/bin/env python3
"""How far can any architecture -> milliseconds model get on each test device?

A ceiling for issue 15 part B's absolute goals (within-10 % and Spearman),
computed from the full latency tables instead of k = 20 samples: two ridge
models, 5-fold cross-validated over every measured architecture of the
device (12,500 training rows on NB201, 4,000 on FBNet):

* `additive`: one-hot op (NB201) or block (FBNet) per position, plus a
  constant: latency as a sum of per-position costs, the physical model of a
  sequential network;
* `inter`: NB201 adds every pair and triple of edge ops as one-hot
  interactions (2,906 columns), FBNet every pair of adjacent layers (1,900).

Per device the better of the two (by within-10 %, and separately by
Spearman) is reported; a task's ceiling is the mean over its test devices,
as the harness averages. A predictor that sees 20 samples of the device can
do no better than a model fit on 12,500 of them unless the table's own
measurement noise is lower than these residuals suggest.

Usage: python3 docs/experiments/within10_ceiling.py [DATA_DIR]   (numpy)
"""
import csv
import itertools
import json
import sys

import numpy as np

SEED = 0
FOLDS = 5
RIDGE = 1.0
DATA = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"


def columns(space):
    if space == "nb201":
        return ["e01", "e02", "e12", "e03", "e13", "e23"], 5
    return ["l%02d" % i for i in range(22)], 9


def design(space, arch, interactions):
    cols, nops = columns(space)
    ops = np.array([[int(a[c]) for c in cols] for a in arch])
    blocks = [np.ones((len(ops), 1))]
    orders = (1, 2, 3) if space == "nb201" else (1, 2)
    for r in orders if interactions else (1,):
        for combo in itertools.combinations(range(len(cols)), r):
            if space == "fbnet" and r == 2 and combo[1] - combo[0] > 1:
                continue  # adjacent layers only
            code = np.zeros(len(ops), int)
            for c in combo:
                code = code * nops + ops[:, c]
            one_hot = np.zeros((len(ops), nops**r))
            one_hot[np.arange(len(ops)), code] = 1
            blocks.append(one_hot)
    return np.hstack(blocks)


def cross_validated(x, y, rng):
    order = rng.permutation(len(y))
    pred = np.empty_like(y)
    for f in range(FOLDS):
        test = order[f::FOLDS]
        train = np.setdiff1d(order, test)
        xt = x[train]
        beta = np.linalg.solve(xt.T @ xt + RIDGE * np.eye(x.shape[1]), xt.T @ y[train])
        pred[test] = x[test] @ beta
    return pred


def average_ranks(v):
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    sorted_v = v[order]
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2
        i = j + 1
    return ranks


def spearman(a, b):
    return float(np.corrcoef(average_ranks(a), average_ranks(b))[0, 1])


def main():
    tasks = json.load(open(f"{DATA}/tasks.json"))
    print(f"seed {SEED}, {FOLDS}-fold CV, ridge {RIDGE}, data {DATA}\n")
    print("| space | device | within 10% (model) | Spearman | median abs. error |")
    print("|---|---|---|---|---|")
    best = {}
    for space in ("nb201", "fbnet"):
        arch = list(csv.DictReader(open(f"{DATA}/{space}/archs.csv")))
        lat = list(csv.DictReader(open(f"{DATA}/{space}/latency.csv")))
        models = {m: design(space, arch, m == "inter") for m in ("additive", "inter")}
        devices = sorted({d for t in tasks[space].values() for d in t["test"]})
        for d in devices:
            y = np.array([float(r[d]) if r[d] else np.nan for r in lat])
            keep = ~np.isnan(y)
            y = y[keep]
            scores = []
            for name, x in models.items():
                p = cross_validated(x[keep], y, np.random.default_rng(SEED))
                err = np.abs(p - y) / y
                scores.append((float(np.mean(err <= 0.1)), name, spearman(p, y), float(np.median(err))))
            w, name, _, med = max(scores)
            rho = max(s[2] for s in scores)
            best[(space, d)] = (w, rho)
            print(f"| {space} | {d} | {100 * w:.1f}% ({name}) | {rho:.3f} | {100 * med:.1f}% |")
    print("\n| task | test devices | within-10% ceiling | Spearman ceiling |")
    print("|---|---|---|---|")
    for space in ("nb201", "fbnet"):
        for t, v in tasks[space].items():
            w = np.mean([best[(space, d)][0] for d in v["test"]])
            rho = np.mean([best[(space, d)][1] for d in v["test"]])
            print(f"| {t} | {len(v['test'])} | {100 * w:.1f}% | {rho:.3f} |")


if __name__ == "__main__":
    main()
