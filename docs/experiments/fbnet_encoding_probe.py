"""Linear probe: how much of an FBNet device's latency ordering a 32-d
encoding carries. Ridge (lambda 1e-2) from the shipped encoding to log
latency on k random architectures of each source device of F1, Spearman
on the other architectures, 5 draws per device (seed 0).

usage: python docs/experiments/fbnet_encoding_probe.py   (needs numpy)
"""
import csv, gzip, json, os
from pathlib import Path
import numpy as np
os.chdir(Path(__file__).resolve().parents[2] / "data")
def load(path):
    with gzip.open(path, 'rt') as f:
        r = csv.reader(f); h = next(r); rows = [list(map(float, x)) for x in r]
    a = np.array(rows); return h, a
tasks = json.load(open('tasks.json'))['fbnet']
srcs = tasks['F1']['train']
h, lat = load('fbnet/latency.csv.gz')
enc = {n: load(f'encodings/fbnet_{n}.csv.gz')[1][:, 1:] for n in ['arch2vec', 'cate']}
def rank(v): return np.argsort(np.argsort(v))
def spear(a, b): return np.corrcoef(rank(a), rank(b))[0, 1]
rng = np.random.default_rng(0)
print('F1 sources:', srcs)
for k in [20, 100, 800]:
    out = {}
    for name, X in enc.items():
        res = []
        for dev in srcs:
            y = np.log(lat[:, h.index(dev)])
            for t in range(5):
                idx = rng.permutation(len(y)); tr, te = idx[:k], idx[k:]
                Xa = np.c_[X, np.ones(len(X))]
                lam = 1e-2 * np.eye(Xa.shape[1])
                w = np.linalg.solve(Xa[tr].T @ Xa[tr] + lam, Xa[tr].T @ y[tr])
                res.append(spear(Xa[te] @ w, y[te]))
        out[name] = (np.mean(res), np.std(res))
    print(k, {n: f"{m:.3f} ± {s:.3f}" for n, (m, s) in out.items()})
