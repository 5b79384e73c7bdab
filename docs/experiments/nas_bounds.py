#!/usr/bin/env python3
"""Offline study of the exhaustive search's risk bound (docs/experiments/nas.md).

Reads the per-(trial, device) dumps of `nasflat-host nas --dump-dir DIR`
(predictions of every NB201 architecture by the transferred GNN and by the
linear stack, and their leave-one-out log predictions on the k samples) and
replays the exhaustive search under several bound variants, scoring regret
against the full-space oracle and violations against the device's own table.
This mirrors `predictor/src/nas/` so variants can be compared without
re-running transfers; the chosen variant is then implemented there and the
reported tables come from the CLI itself.

usage: nas_bounds.py DUMP_DIR [--budgets-from-percentiles 40,75,95]
                              [--budgets DEVICE=C1,C2,... ...] [--risk 0.1]
"""

import argparse
import csv
import glob
import gzip
import json
import math
import os
import sys

import numpy as np

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data", "nb201")


def load_tables():
    rows = list(csv.reader(gzip.open(os.path.join(DATA, "latency.csv.gz"), "rt")))
    names = rows[0][1:]
    lat = np.array([[float(x) if x else np.nan for x in r[1:]] for r in rows[1:]])
    acc_rows = list(csv.reader(gzip.open(os.path.join(DATA, "accuracy.csv.gz"), "rt")))
    col = acc_rows[0].index("cifar100_test")
    acc = np.array([float(r[col]) if r[col] else np.nan for r in acc_rows[1:]])
    zrows = list(csv.reader(gzip.open(os.path.join(DATA, "zcp.csv.gz"), "rt")))
    fi, pi = zrows[0].index("cifar10_flops"), zrows[0].index("cifar10_params")
    global FLOPS_PARAMS
    FLOPS_PARAMS = np.array([[1.0, float(r[fi] or 0), float(r[pi] or 0)] for r in zrows[1:]])
    return {n: lat[:, i] for i, n in enumerate(names)}, acc


FLOPS_PARAMS = None


def upper_trivial(t, risk):
    """The trivial baseline (predictor/src/nas/latency.rs TrivialFit): least
    squares of ms on [1, FLOPs, params], floored at half the fastest
    sample, with its own leave-one-out log residuals."""
    x = FLOPS_PARAMS[t.rows]
    floor = 0.5 * t.ms.min()
    res = []
    for i in range(len(t.ms)):
        m = np.arange(len(t.ms)) != i
        c = np.linalg.solve(x[m].T @ x[m], x[m].T @ t.ms[m])
        res.append(math.log(t.ms[i]) - math.log(max(x[i] @ c, floor)))
    c = np.linalg.solve(x.T @ x, x.T @ t.ms)
    return np.log(np.maximum(FLOPS_PARAMS @ c, floor)) + conformal(np.array(res), risk)


def conformal(scores, risk):
    s = np.sort(np.asarray(scores)[np.isfinite(scores)])
    n = len(s)
    if n == 0:
        return 0.0
    rank = math.ceil((n + 1) * (1 - risk))
    return float(s[min(max(rank, 1), n) - 1])


def resolution(ms):
    """1.0 when every sample is a whole number of ms (the device reports
    integer ms), else None."""
    return 1.0 if all(abs(m - round(m)) < 1e-9 for m in ms) else None


def feasible_limit(c, res):
    """The largest upper bound (log ms, strict when quantised) that keeps
    the reported latency within c."""
    if res is None:
        return math.log(c), False
    return math.log((math.floor(c / res) + 1) * res), True


def answer(log_upper, acc, c, res):
    lim, strict = feasible_limit(c, res)
    ok = (log_upper < lim) if strict else (log_upper <= lim)
    ok &= np.isfinite(acc)
    if not ok.any():
        return None
    idx = np.flatnonzero(ok)
    best = acc[idx].max()
    tie = idx[acc[idx] == best]
    return int(tie[np.argmin(log_upper[tie])])


class Trial:
    def __init__(self, path):
        d = json.load(open(path))
        self.device = d["device"]
        self.seed = d["seed"]
        self.ms = np.array(d["ms"])
        self.rows = np.array(d["rows"])
        self.gl = np.array(d["gnn_loo_log"])
        self.sl = np.array(d["stack_loo_log"])
        self.g = np.log(np.maximum(np.array(d["gnn_ms"]), 1e-12))
        self.s = np.log(np.maximum(np.array(d["stack_ms"]), 1e-12))


def upper_global(t, w, risk):
    p = (1 - w) * t.g + w * t.s
    pi = (1 - w) * t.gl + w * t.sl
    q = conformal(np.log(t.ms) - pi, risk)
    return p + q


def upper_scaled(t, w, risk, eps):
    """Normalised conformal: residual / (|gnn - stack| + eps)."""
    p = (1 - w) * t.g + w * t.s
    pi = (1 - w) * t.gl + w * t.sl
    sig = np.abs(t.g - t.s) + eps
    sig_i = np.abs(t.gl - t.sl) + eps
    q = conformal((np.log(t.ms) - pi) / sig_i, risk)
    return p + q * sig


def upper_top(t, w, risk, acc, share):
    """Conformal over the residuals of the most accurate `share` of the k
    samples only (the architectures a search answers are accurate ones)."""
    p = (1 - w) * t.g + w * t.s
    pi = (1 - w) * t.gl + w * t.sl
    r = np.log(t.ms) - pi
    a = acc[t.rows]
    keep = a >= np.quantile(a, 1 - share)
    return p + conformal(r[keep], risk)


def upper_shift(t, w, risk, acc):
    """Residual ~ a + b * accuracy fitted on the k samples (leave-one-out
    for the samples' own scores); bound = prediction + shift + conformal
    quantile of the shifted residuals."""
    p = (1 - w) * t.g + w * t.s
    pi = (1 - w) * t.gl + w * t.sl
    r = np.log(t.ms) - pi
    a = acc[t.rows]
    x = np.stack([np.ones_like(a), a], 1)
    scores = []
    for i in range(len(r)):
        m = np.arange(len(r)) != i
        c, *_ = np.linalg.lstsq(x[m], r[m], rcond=None)
        scores.append(r[i] - x[i] @ c)
    c, *_ = np.linalg.lstsq(x, r, rcond=None)
    shift = c[0] + c[1] * np.nan_to_num(acc)
    return p + shift + conformal(np.array(scores), risk)


def pick_w(t, risk, grid):
    """The blend weight whose LOO conformal quantile (the bound's width) is
    smallest on the k samples."""
    widths = []
    for w in grid:
        pi = (1 - w) * t.gl + w * t.sl
        widths.append(conformal(np.log(t.ms) - pi, risk))
    return grid[int(np.argmin(widths))]


def variants(risk, acc):
    out = {}
    for w in [0.85, 1.0]:
        for scale in [1.0, 2.0]:
            r = risk * scale
            for share in [0.5, 0.3]:
                out[f"top{share} w={w} risk*{scale}"] = (
                    lambda t, w=w, r=r, sh=share: upper_top(t, w, r, acc, sh), False)
            out[f"acc-shift w={w} risk*{scale}"] = (
                lambda t, w=w, r=r: upper_shift(t, w, r, acc), False)
    for w in [0.0, 0.5, 0.7, 0.85, 0.95, 1.0]:
        for scale in [1.0, 1.5, 2.0, 2.5, 3.0]:
            r = min(risk * scale, 0.99)
            for integer in [False, True]:
                out[f"global w={w} risk*{scale} int={integer}"] = (
                    lambda t, w=w, r=r: upper_global(t, w, r), integer)
        for eps in [0.02, 0.05, 0.1, 0.2]:
            for integer in [False, True]:
                out[f"scaled w={w} eps={eps} int={integer}"] = (
                    lambda t, w=w, e=eps: upper_scaled(t, w, risk, e), integer)
    for scale in [1.0, 1.5, 2.0, 2.5, 3.0]:
        for integer in [False, True]:
            out[f"trivial risk*{scale} int={integer}"] = (
                lambda t, r=risk * scale: upper_trivial(t, r), integer)
    grid = [0.0, 0.25, 0.5, 0.7, 0.85, 1.0]
    for integer in [False, True]:
        out[f"pick-w global int={integer}"] = (
            lambda t: upper_global(t, pick_w(t, risk, grid), risk), integer)
    return out


def budgets_for(lat, device, args):
    for spec in args.budgets:
        name, cs = spec.split("=")
        if name == device:
            return [float(c) for c in cs.split(",")]
    col = lat[device][np.isfinite(lat[device])]
    return [float(np.percentile(col, p, method="lower")) for p in args.percentiles]


def report(args, lat, acc, trials, devices, chosen):
    """Per (device, C): true ms / accuracy (mean ± std over trials) /
    violation rate, regret, for each variant; then the summary."""
    head = " | ".join(n for n, _ in chosen)
    print(f"| device | C ms | {head} | oracle |")
    print("|---|---|" + "---|" * (len(chosen) + 1))
    summary = {n: [] for n, _ in chosen}
    for dev in devices:
        col = lat[dev]
        truth = np.where(np.isfinite(col), col, np.inf)
        for c in budgets_for(lat, dev, args):
            oracle = acc[(truth <= c) & np.isfinite(acc)].max()
            cells = []
            for name, (upper_fn, integer) in chosen:
                picks = []
                for t in trials:
                    if t.device == dev:
                        res = resolution(t.ms) if integer else None
                        picks.append(answer(upper_fn(t), acc, c, res))
                got = [a for a in picks if a is not None]
                ms = np.array([truth[a] for a in got])
                ac = np.array([acc[a] for a in got])
                viol = float(np.sum(ms > c)) / len(picks)
                regret = oracle - ac.mean() if len(got) else float("nan")
                none = len(picks) - len(got)
                summary[name].append((regret, viol, none, len(picks)))
                extra = f" ({none} none)" if none else ""
                cells.append(f"{ms.mean():.2f} ± {ms.std():.2f} / {ac.mean():.2f} ± {ac.std():.2f}"
                             f" / {100*viol:.0f}%{extra}, regret {regret:.2f}")
            print(f"| {dev} | {c:g} | " + " | ".join(cells) + f" | {oracle:.2f} |")
    print()
    print("| variant | pairs | mean regret | worst pair regret | pairs above 1.0 | violation rate | answers |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in summary.items():
        r = np.array([x[0] for x in rows])
        answered = sum(x[3] - x[2] for x in rows)
        total = sum(x[3] for x in rows)
        print(f"| {name} | {len(rows)} | {np.nanmean(r):.2f} | {np.nanmax(r):.2f} | "
              f"{int(np.sum(r > 1.0))} | {100*np.mean([x[1] for x in rows]):.1f}% | {answered}/{total} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dump_dir")
    ap.add_argument("--percentiles", default="40,75,95",
                    type=lambda s: [float(x) for x in s.split(",")])
    ap.add_argument("--budgets", nargs="*", default=[])
    ap.add_argument("--risk", type=float, default=0.1)
    ap.add_argument("--only", default=None, help="substring filter on variant names")
    ap.add_argument("--pairs", action="store_true", help="print per-pair rows")
    ap.add_argument("--report", default=None,
                    help="';'-separated variant names: print the per-pair table of these")
    args = ap.parse_args()
    lat, acc = load_tables()
    trials = [Trial(p) for p in sorted(glob.glob(os.path.join(args.dump_dir, "*.json")))]
    if not trials:
        sys.exit(f"no dumps in {args.dump_dir}")
    devices = sorted({t.device for t in trials})
    seeds = sorted({t.seed for t in trials})
    print(f"devices {devices}; seeds {seeds}; risk {args.risk}", file=sys.stderr)
    vs = variants(args.risk, acc)
    if args.report:
        report(args, lat, acc, trials, devices, [(n, vs[n]) for n in args.report.split(";")])
        return
    results = []
    for name, (upper_fn, integer) in vs.items():
        if args.only and args.only not in name:
            continue
        pairs = []
        for dev in devices:
            col = lat[dev]
            truth = np.where(np.isfinite(col), col, np.inf)
            for c in budgets_for(lat, dev, args):
                oracle = acc[(truth <= c) & np.isfinite(acc)].max()
                regrets, viol, none = [], 0, 0
                for t in trials:
                    if t.device != dev:
                        continue
                    res = resolution(t.ms) if integer else None
                    a = answer(upper_fn(t), acc, c, res)
                    if a is None:
                        none += 1
                        continue
                    regrets.append(oracle - acc[a])
                    viol += truth[a] > c
                n = len(regrets) + none
                pairs.append((dev, c, float(np.mean(regrets)) if regrets else float("nan"),
                              viol / n, none))
        reg = np.array([p[2] for p in pairs])
        results.append((name, np.nanmean(reg), np.nanmax(reg),
                        np.mean([p[3] for p in pairs]), sum(p[4] for p in pairs), pairs))
    results.sort(key=lambda r: r[1])
    print("| variant | pairs | mean regret | worst pair | violations | none |")
    print("|---|---|---|---|---|---|")
    for name, mr, worst, vr, none, pairs in results:
        print(f"| {name} | {len(pairs)} | {mr:.3f} | {worst:.2f} | {100*vr:.1f}% | {none} |")
        if args.pairs:
            for dev, c, r, v, n in pairs:
                print(f"|   {dev} | {c} | {r:.2f} | | {100*v:.0f}% | {n} |")


if __name__ == "__main__":
    main()
