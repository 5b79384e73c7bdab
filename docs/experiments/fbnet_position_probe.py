"""Linear probe: how much of an FBNet device's latency ordering depends on
*where* each block sits. Ridge (lambda 1e-2 x n, standardised features)
from each representation to log latency, fit on 4,000 random
architectures of the device's own table, Spearman on the other 1,000
(seed 0). The representations: the shipped Arch2Vec and CATE encodings,
the bag of blocks (how many layers hold each of the 9 blocks: all the
code's network sees of an edgeless FBNet graph), and the one-hot block of
each of the 22 layers (everything there is).

usage: python docs/experiments/fbnet_position_probe.py   (needs numpy)
"""
import csv, gzip, os
from pathlib import Path
import numpy as np
os.chdir(Path(__file__).resolve().parents[2] / "data")
def load(path):
    with gzip.open(path, 'rt') as f:
        r = csv.reader(f); h = next(r); rows = list(r)
    return h, rows
ops = np.array([[int(x) for x in r[2:]] for r in load('fbnet/archs.csv.gz')[1]])
lh, lat = load('fbnet/latency.csv.gz')
lat = np.array([[float(x) for x in r[1:]] for r in lat])
n = len(ops)
reps = {
    'arch2vec (shipped, 32-d)': np.array([[float(x) for x in r[1:]] for r in load('encodings/fbnet_arch2vec.csv.gz')[1]]),
    'cate (shipped, 32-d)': np.array([[float(x) for x in r[1:]] for r in load('encodings/fbnet_cate.csv.gz')[1]]),
    'bag of blocks (9 counts)': np.stack([(ops == k).sum(1) for k in range(9)], 1).astype(float),
    'block per layer (22 x 9 one-hot)': np.eye(9)[ops].reshape(n, -1),
}
devices = ['eyeriss', 'fpga', 'raspi4', 'samsung_s7', '1080ti_32', 'titan_rtx_32']
perm = np.random.default_rng(0).permutation(n); tr, te = perm[:4000], perm[4000:]
def rank(v): return np.argsort(np.argsort(v))
def spear(a, b): return np.corrcoef(rank(a), rank(b))[0, 1]
def probe(X, y):
    mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-9
    Xs = np.c_[(X - mu) / sd, np.ones(n)]
    w = np.linalg.solve(Xs[tr].T @ Xs[tr] + 1e-2 * len(tr) * np.eye(Xs.shape[1]), Xs[tr].T @ y[tr])
    return spear(Xs[te] @ w, y[te])
print('| representation | ' + ' | '.join(devices) + ' |')
print('|---|' + '---:|' * len(devices))
for name, X in reps.items():
    cells = [f'{probe(X, np.log(lat[:, lh.index(d) - 1])):.3f}' for d in devices]
    print(f'| {name} | ' + ' | '.join(cells) + ' |')
