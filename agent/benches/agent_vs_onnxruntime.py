#!/usr/bin/env python3
"""nasflat-agent (tract) against onnxruntime, in one reproducible run.

Measures, on this machine, and writes one markdown report (stdout and --out):

1. Head to head: the agent (tract, 1 thread) against onnxruntime (1 thread,
   sequential, ORT_ENABLE_ALL) on generated NB201 and FBNet models, median ms
   each, the tract/ort ratio per model and its geometric mean. Runtimes are
   interleaved per model and round (agent variant, ort, next variant, ...), so
   a burst of load on a shared machine hits all of them alike. Tract variants
   (--threads 2, tract knobs passed as environment variables, other agent
   binaries) are timed in the same rounds.
2. Repeatability: CV of the reported median over separate agent invocations of
   NB201 index 0.
3. Rank agreement: Spearman (and Kendall) between agent and onnxruntime medians
   over N random NB201 architectures (fixed, printed seed), with a test-retest
   of each runtime (the agreement noise alone allows) and the correlation of
   the tract/ort ratio with the architecture's operator counts.
4. Floor: the agent's median on a trivial Identity / Relu model of shape [1,1].

With --ort-ref and --ort-ref-lib, the head to head also times each model
through onnxruntime's C API on that library (`nasflat-ort-reference`, built
with `cargo build -p nasflat-ort-reference`), in the same rounds, and gives
the agent's `--runtime ort` variants' ratio to it: Python's onnxruntime is a
separately compiled copy of the library, this is the one the agent opens.

Takes about 5 minutes on 2 cores with the defaults. docs/agent-bench.md was
made with an extra variant, an agent binary built before the dev profile
dropped the dependencies' debug assertions:

    python agent/benches/agent_vs_onnxruntime.py \
        --add-variant 'old-dev@/path/to/old/nasflat-agent' \
        --rank-variant tract,avgpool-sep,old-dev --repeat-variant tract,old-dev

Needs python3 with onnx, onnxruntime and numpy (scipy optional), e.g.:

    python3 -m venv ~/.cache/nasflat-venv
    ~/.cache/nasflat-venv/bin/pip install onnx onnxruntime numpy
    export CARGO_TARGET_DIR=$HOME/.cache/nasflat-target
    cargo build -p nasflat-agent -p nasflat-onnx
    ~/.cache/nasflat-venv/bin/python agent/benches/agent_vs_onnxruntime.py

The binaries are copied to a scratch directory first, so a concurrent cargo
build cannot swap them in the middle of the run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

REPO = Path(__file__).resolve().parents[2]
# Tract variants timed next to the plain agent (see parse_variant for the syntax).
# TRACT_* environment variables are tract "knobs" read by the agent's tract at
# optimisation or evaluation time; no agent change is needed to try them.
DEFAULT_VARIANTS = [
    "t2:--threads,2",
    "avgpool-sep;TRACT_AVGPOOL_SEPARABLE=true",
    "eager-im2col;TRACT_LAZY_IM2COL_MIN_KERNEL=100",
]
NB201_SIZE = 15625
FBNET_SIZE = 5000
ALL_CONV3 = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
    "|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Machine facts
# --------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model", "Hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def governor() -> str:
    p = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    try:
        return p.read_text().strip()
    except OSError:
        return "n/a (no cpufreq in sysfs)"


def loadavg() -> str:
    try:
        a, b, c = os.getloadavg()
        return f"{a:.2f} {b:.2f} {c:.2f}"
    except OSError:
        return "n/a"


# --------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------


def ranks(xs: list[float]) -> list[float]:
    """Average ranks (1-based), ties share their mean rank."""
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r


def pearson(a: list[float], b: list[float]) -> float:
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    sab = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    saa = sum((x - ma) ** 2 for x in a)
    sbb = sum((y - mb) ** 2 for y in b)
    return sab / math.sqrt(saa * sbb) if saa > 0 and sbb > 0 else float("nan")


def spearman(a: list[float], b: list[float]) -> float:
    try:
        from scipy.stats import spearmanr  # type: ignore

        return float(spearmanr(a, b).statistic)
    except ImportError:
        return pearson(ranks(a), ranks(b))


def kendall(a: list[float], b: list[float]) -> float:
    """Kendall tau-b."""
    n = len(a)
    conc = disc = ta = tb = 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                ta += 1
            elif db == 0:
                tb += 1
            elif (da > 0) == (db > 0):
                conc += 1
            else:
                disc += 1
    denom = math.sqrt((conc + disc + ta) * (conc + disc + tb))
    return (conc - disc) / denom if denom else float("nan")


def geomean(xs: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(x) for x in xs))


def cv(xs: list[float]) -> float:
    return statistics.stdev(xs) / statistics.fmean(xs) if len(xs) > 1 else 0.0


# --------------------------------------------------------------------------
# Runners
# --------------------------------------------------------------------------


class Limits:
    def __init__(
        self, min_runs: int, min_ms: int, max_ms: int, warmup_runs: int, max_runs: int = 100_000
    ):
        self.min_runs, self.min_ms, self.max_ms = min_runs, min_ms, max_ms
        self.warmup_runs, self.max_runs = warmup_runs, max_runs

    def agent_args(self) -> list[str]:
        return [
            "--min-runs", str(self.min_runs),
            "--min-ms", str(self.min_ms),
            "--max-ms", str(self.max_ms),
            "--warmup-runs", str(self.warmup_runs),
            "--max-runs", str(self.max_runs),
        ]  # fmt: skip


class Variant:
    """One way of running tract: an agent binary, extra flags, extra env."""

    def __init__(
        self, name: str, binary: Path, flags: list[str], env: dict[str, str], source: Path | None = None
    ):
        self.name, self.binary, self.flags, self.env = name, binary, flags, env
        self.source = source

    def describe(self) -> str:
        parts = [f"binary `{self.source}`"] if self.source else []
        parts += [f"`{' '.join(self.flags)}`"] if self.flags else []
        parts += [f"`{k}={v}`" for k, v in self.env.items()]
        return " ".join(parts) or "agent defaults (`--threads 1`)"


# provenance.machine of the plain agent's last sample (target triple, tract version).
AGENT_MACHINE: dict = {}


def pick_variants(variants: list[Variant], names: str, flag: str) -> list[Variant]:
    picked = []
    for name in names.split(","):
        v = next((v for v in variants if v.name == name), None)
        if v is None:
            sys.exit(f"{flag} {name}: no such variant ({', '.join(v.name for v in variants)})")
        picked.append(v)
    return picked


def run_agent(
    variant: Variant, target: list[str], limits: Limits, seed: int
) -> dict:
    cmd = [str(variant.binary), "measure", *target, "--json", "--seed", str(seed)]
    cmd += limits.agent_args() + variant.flags
    env = dict(os.environ)
    env.update(variant.env)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed: {out.stderr.strip()}")
    sample = json.loads(out.stdout.strip().splitlines()[-1])
    if variant.name == "tract":
        AGENT_MACHINE.update(sample["provenance"]["machine"])
    return sample


class OrtModel:
    """An onnxruntime session timed with the agent's loop: warm-up, then runs
    until both min_runs and min_ms are reached (or max_ms), fresh random
    inputs drawn outside the timed region."""

    def __init__(self, path: Path, level: str = "all"):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        }[level]
        self.session = ort.InferenceSession(
            str(path), so, providers=["CPUExecutionProvider"]
        )
        self.inputs = [(i.name, [int(d) for d in i.shape]) for i in self.session.get_inputs()]

    def time(self, limits: Limits, rng: np.random.Generator) -> dict:
        def feed():
            return {
                n: rng.uniform(-1.0, 1.0, size=s).astype(np.float32)
                for n, s in self.inputs
            }

        for _ in range(limits.warmup_runs):
            self.session.run(None, feed())
        times: list[float] = []
        timed = 0.0
        while True:
            if timed >= limits.max_ms / 1e3 or len(times) >= limits.max_runs:
                break
            if len(times) >= limits.min_runs and timed >= limits.min_ms / 1e3:
                break
            f = feed()
            t0 = time.perf_counter()
            self.session.run(None, f)
            dt = time.perf_counter() - t0
            timed += dt
            times.append(dt * 1e3)
        return {
            "median_ms": float(np.median(times)),
            "min_ms": float(np.min(times)),
            "cv": float(np.std(times, ddof=1) / np.mean(times)) if len(times) > 1 else 0.0,
            "runs": len(times),
        }


class CApiReference:
    """The same model through onnxruntime's C API on the library the agent's
    `--runtime ort` opens (`nasflat-ort-reference`, agent/ort-reference):
    the reference that tells the agent's own overhead apart from the
    difference between two builds of onnxruntime (Python's module links its
    own copy)."""

    def __init__(self, binary: Path, lib: Path, path: Path):
        self.binary, self.lib, self.path = binary, lib, path

    def time(self, limits: Limits, seed: int) -> dict:
        cmd = [
            str(self.binary), "--ort-lib", str(self.lib), "--model", str(self.path),
            "--warmup-runs", str(limits.warmup_runs), "--min-runs", str(limits.min_runs),
            "--min-ms", str(limits.min_ms), "--max-ms", str(limits.max_ms),
            "--max-runs", str(limits.max_runs), "--seed", str(seed),
        ]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd)} failed: {out.stderr.strip()}")
        j = json.loads(out.stdout.strip().splitlines()[-1])
        ts = j["times_ms"]
        cv_ = float(np.std(ts, ddof=1) / np.mean(ts)) if len(ts) > 1 else 0.0
        return {"median_ms": j["median_ms"], "min_ms": j["min_ms"], "cv": cv_, "runs": j["runs"]}


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


def export(onnx_bin: Path, space: str, sel: list[str], out: Path, seed: int) -> None:
    cmd = [str(onnx_bin), "export", "--space", space, *sel, "--seed", str(seed), "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def arch_string(onnx_bin: Path, space: str, sel: list[str]) -> tuple[str, int | None]:
    out = subprocess.run(
        [str(onnx_bin), "info", "--space", space, *sel],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    arch, index = "?", None
    for line in out.splitlines():
        if line.startswith("arch:"):
            arch = line.split(":", 1)[1].strip()
        if line.startswith("index:"):
            v = line.split(":", 1)[1].strip()
            index = int(v) if v.isdigit() else None
    return arch, index


def trivial_model(path: Path, op: str) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"])], f"trivial_{op}", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


# --------------------------------------------------------------------------
# Report helpers
# --------------------------------------------------------------------------


def fmt(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if x == x else "n/a"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def parse_variant(spec: str, default_bin: Path, scratch: Path) -> Variant:
    """NAME[@BINARY][:FLAG,FLAG,...][;ENV=V,ENV=V] e.g.
    `t2:--threads,2`, `sep;TRACT_AVGPOOL_SEPARABLE=true`,
    `nodebug@/path/to/nasflat-agent`."""
    env: dict[str, str] = {}
    if ";" in spec:
        spec, envs = spec.split(";", 1)
        for kv in filter(None, envs.split(",")):
            k, v = kv.split("=", 1)
            env[k] = v
    flags: list[str] = []
    if ":" in spec:
        spec, fl = spec.split(":", 1)
        flags = [f for f in fl.split(",") if f]
    binary, src = default_bin, None
    if "@" in spec:
        spec, b = spec.split("@", 1)
        src = Path(b).expanduser()
        binary = scratch / f"nasflat-agent-{spec}"
        shutil.copy2(src, binary)
    return Variant(spec, binary, flags, env, src)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def main() -> int:
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/nasflat-target"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agent", type=Path, default=target / "debug/nasflat-agent")
    ap.add_argument("--onnx-bin", type=Path, default=target / "debug/nasflat-onnx")
    ap.add_argument("--out", type=Path, default=REPO / "docs/agent-bench.md")
    ap.add_argument("--json-out", type=Path, help="also write every number as JSON here")
    ap.add_argument("--seed", type=int, default=20260311, help="picks the archs and the inputs")
    ap.add_argument("--nb201", type=int, default=3, help="random NB201 archs besides index 0 and all-conv3x3")
    ap.add_argument("--fbnet", type=int, default=3, help="FBNet archs (index 0 + random)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per model (head to head)")
    ap.add_argument(
        "--model-file", action="append", default=[], type=Path,
        help="an ONNX file (fixed input shapes) added to the head to head, e.g. the onnx package's "
        "backend/test/data/light/light_resnet50.onnx (repeatable)",
    )  # fmt: skip
    ap.add_argument("--h2h-min-runs", type=int, default=20)
    ap.add_argument("--h2h-min-ms", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5, help="agent invocations for repeatability")
    ap.add_argument("--rank-n", type=int, default=50, help="NB201 archs for the rank agreement")
    ap.add_argument("--rank-min-runs", type=int, default=10)
    ap.add_argument("--rank-min-ms", type=int, default=200)
    ap.add_argument(
        "--variant", action="append", default=None,
        help="tract variant besides the plain agent, NAME[@BINARY][:FLAG,...][;ENV=V,...] "
        "(repeatable; replaces the defaults: " + " ".join(DEFAULT_VARIANTS) + ")",
    )  # fmt: skip
    ap.add_argument(
        "--add-variant", action="append",
        help="like --variant but keeps the defaults, e.g. "
        "'nodebug@/path/to/other/nasflat-agent' or 'nodebug-sep@/path;TRACT_AVGPOOL_SEPARABLE=true'",
    )  # fmt: skip
    ap.add_argument(
        "--rank-variant", default="tract",
        help="comma list of tract variants the rank agreement measures (default: the plain agent)",
    )  # fmt: skip
    ap.add_argument("--no-retest", action="store_true", help="skip the test-retest runs of the rank section")
    ap.add_argument("--no-ort-basic", action="store_true", help="skip the ORT_ENABLE_BASIC column")
    ap.add_argument(
        "--ort-ref", type=Path,
        help="nasflat-ort-reference binary: adds a column timed through onnxruntime's C API "
        "on --ort-ref-lib, in the same rounds (head to head only)",
    )  # fmt: skip
    ap.add_argument("--ort-ref-lib", type=Path, help="the libonnxruntime.so.1.N the reference opens")
    ap.add_argument(
        "--repeat-variant", default="tract",
        help="comma list of tract variants the repeatability section runs (default: the plain agent)",
    )  # fmt: skip
    ap.add_argument("--skip", default="", help="comma list of sections to skip: h2h,repeat,rank,floor")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if (args.ort_ref is None) != (args.ort_ref_lib is None):
        sys.exit("--ort-ref and --ort-ref-lib go together")

    command = shlex.join([sys.executable, *sys.argv])
    started = time.time()
    load_start = loadavg()
    scratch = Path(tempfile.mkdtemp(prefix="nasflat-bench-"))
    try:
        agent = scratch / "nasflat-agent"
        onnx_bin = scratch / "nasflat-onnx"
        for src, dst in ((args.agent, agent), (args.onnx_bin, onnx_bin)):
            if not src.exists():
                sys.exit(f"{src} not found: build it with `cargo build -p nasflat-agent -p nasflat-onnx`")
            shutil.copy2(src, dst)
        if args.ort_ref:
            shutil.copy2(args.ort_ref, scratch / "nasflat-ort-reference")
            args.ort_ref = scratch / "nasflat-ort-reference"
        specs = args.variant if args.variant is not None else DEFAULT_VARIANTS
        specs = specs + (args.add_variant or [])
        variants = [Variant("tract", agent, [], {})]
        variants += [parse_variant(s, agent, scratch) for s in specs]
        return run(args, skip, command, started, load_start, scratch, agent, onnx_bin, variants)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(args, skip, command, started, load_start, scratch, agent, onnx_bin, variants) -> int:
    agent_version = subprocess.run(
        [str(agent), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    log(f"seed {args.seed}; machine {cpu_model()}; {agent_version}; load {loadavg()}")
    log(f"command: {command}")
    rng = random.Random(args.seed)
    np_rng = np.random.default_rng(args.seed)
    results: dict = {"seed": args.seed, "command": command}
    out: list[str] = []

    # ---------------- 1. head to head ----------------
    h2h_rows = []
    if "h2h" not in skip:
        picks: list[tuple[str, list[str]]] = [("nb201", ["--index", "0"]), ("nb201", ["--arch", ALL_CONV3])]
        seen = {0, 1462}
        while len(picks) < 2 + args.nb201:
            i = rng.randrange(NB201_SIZE)
            if i not in seen:
                seen.add(i)
                picks.append(("nb201", ["--index", str(i)]))
        fb = [0] + rng.sample(range(1, FBNET_SIZE), max(0, args.fbnet - 1))
        picks += [("fbnet", ["--index", str(i)]) for i in fb[: args.fbnet]]
        picks += [("file", [str(f)]) for f in args.model_file]
        limits = Limits(args.h2h_min_runs, args.h2h_min_ms, 10_000, 5)
        for n, (space, sel) in enumerate(picks):
            path = scratch / f"h2h_{n}.onnx"
            if space == "file":
                arch, index = Path(sel[0]).stem, None
                shutil.copy2(sel[0], path)
            else:
                arch, index = arch_string(onnx_bin, space, sel)
                export(onnx_bin, space, sel, path, 0)
            ort_all = OrtModel(path, "all")
            ort_basic = None if args.no_ort_basic else OrtModel(path, "basic")
            ort_c = CApiReference(args.ort_ref, args.ort_ref_lib, path) if args.ort_ref else None
            per = {v.name: [] for v in variants}
            per["ort"], per["ort-basic"], per["ort-c"] = [], [], []
            invalid = 0
            for r in range(args.rounds):
                # Alternate the order each round so neither runtime always goes first.
                order = list(variants) + ["ort", "ort-basic", "ort-c"]
                if r % 2 == 1:
                    order.reverse()
                for v in order:
                    if v == "ort":
                        per["ort"].append(ort_all.time(limits, np_rng))
                    elif v == "ort-c":
                        if ort_c is not None:
                            per["ort-c"].append(ort_c.time(limits, args.seed + r))
                    elif v == "ort-basic":
                        if ort_basic is not None:
                            per["ort-basic"].append(ort_basic.time(limits, np_rng))
                    else:
                        j = run_agent(v, [str(path)], limits, args.seed)
                        invalid += 0 if j["valid"] else 1
                        s = j["timing"]["summary"]
                        per[v.name].append({"median_ms": s["median_ms"], "min_ms": s["min_ms"], "cv": s["cv"], "runs": s["runs"]})
            agg = {
                k: {
                    "median_ms": statistics.median(x["median_ms"] for x in xs),
                    "min_ms": min(x["min_ms"] for x in xs),
                    "round_medians": [x["median_ms"] for x in xs],
                }
                for k, xs in per.items()
                if xs
            }
            name = arch if space == "file" else f"{space} {index if index is not None else '?'}"
            if sel[0] == "--arch":
                name += " (all conv3x3)"
            h2h_rows.append({"model": name, "arch": arch, "space": space, "agg": agg, "invalid": invalid})
            log(
                f"h2h {name}: tract {agg['tract']['median_ms']:.3f} ms, "
                f"ort {agg['ort']['median_ms']:.3f} ms, load {loadavg()}"
            )
        results["head_to_head"] = h2h_rows

    # ---------------- 2. repeatability ----------------
    rep = None
    if "repeat" not in skip:
        limits = Limits(20, 1000, 10_000, 5)  # the agent's defaults
        rvs = pick_variants(variants, args.repeat_variant, "--repeat-variant")
        runs = {v.name: [] for v in rvs}
        for _ in range(args.repeat):  # interleaved: one invocation of each variant per pass
            for v in rvs:
                runs[v.name].append(run_agent(v, ["--space", "nb201", "--index", "0"], limits, 0))
        rep = {}
        for name, js in runs.items():
            meds = [j["timing"]["summary"]["median_ms"] for j in js]
            mins = [j["timing"]["summary"]["min_ms"] for j in js]
            within = [j["timing"]["summary"]["cv"] for j in js]
            rep[name] = {"medians_ms": meds, "mins_ms": mins, "within_run_cv": within, "cv_of_median": cv(meds), "cv_of_min": cv(mins)}
            log(f"repeatability {name}: medians {['%.3f' % m for m in meds]}, CV {rep[name]['cv_of_median']:.1%}")
        results["repeatability"] = rep

    # ---------------- 3. rank agreement ----------------
    rank = None
    if "rank" not in skip:
        idx = sorted(rng.sample(range(NB201_SIZE), args.rank_n))
        limits = Limits(args.rank_min_runs, args.rank_min_ms, 5_000, 3)
        rvs = pick_variants(variants, args.rank_variant, "--rank-variant")
        tr = {v.name: [] for v in rvs}
        on, bad = [], 0
        # Test-retest: the first variant and ORT measured a second time, in the
        # same interleaved order, give the agreement noise alone allows.
        retest = {"tract": [], "ort": []}
        ops = {"avg_pool_3x3": [], "nor_conv_3x3": [], "nor_conv_1x1": []}
        for k, i in enumerate(idx):
            path = scratch / f"rank_{i}.onnx"
            export(onnx_bin, "nb201", ["--index", str(i)], path, 0)
            arch, _ = arch_string(onnx_bin, "nb201", ["--index", str(i)])
            for op in ops:
                ops[op].append(arch.count(op))
            session = OrtModel(path)
            order: list = list(rvs) + ["ort"]
            if not args.no_retest:
                order += ["retest-tract", "retest-ort"]
            if k % 2 == 1:  # alternate which runtime goes first
                order.reverse()
            for v in order:
                if v == "ort":
                    on.append(session.time(limits, np_rng)["median_ms"])
                elif v == "retest-ort":
                    retest["ort"].append(session.time(limits, np_rng)["median_ms"])
                else:
                    rv = rvs[0] if v == "retest-tract" else v
                    j = run_agent(rv, [str(path)], limits, args.seed)
                    bad += 0 if j["valid"] else 1
                    med = j["timing"]["summary"]["median_ms"]
                    (retest["tract"] if v == "retest-tract" else tr[v.name]).append(med)
            path.unlink()
            if (k + 1) % 10 == 0:
                log(f"rank: {k + 1}/{len(idx)}, load {loadavg()}")
        stats = {}
        for name, xs in tr.items():
            ratio = [a / b for a, b in zip(xs, on)]
            stats[name] = {
                "spearman": spearman(xs, on),
                "kendall": kendall(xs, on),
                "pearson_log": pearson([math.log(x) for x in xs], [math.log(x) for x in on]),
                "ratio_geomean": geomean(ratio),
                "ratio_vs_ops": {op: spearman(ratio, c) for op, c in ops.items()},
            }
        names = list(tr)
        between = {
            f"{a} vs {b}": spearman(tr[a], tr[b])
            for n, a in enumerate(names)
            for b in names[n + 1 :]
        }
        if retest["tract"]:
            between[f"{names[0]} vs {names[0]} (retest)"] = spearman(tr[names[0]], retest["tract"])
            between["ort vs ort (retest)"] = spearman(on, retest["ort"])
        rank = {
            "indices": idx, "tract_ms": tr, "ort_ms": on, "retest": retest, "ops": ops,
            "stats": stats, "between": between, "invalid": bad,
        }  # fmt: skip
        results["rank"] = rank
        log("rank: " + ", ".join(f"{n} spearman {st['spearman']:.3f}" for n, st in stats.items()))

    # ---------------- 4. floor ----------------
    floor = []
    if "floor" not in skip:
        # Enough runs for a stable median, few enough that max-runs is not hit first.
        limits = Limits(1000, 200, 10_000, 5, max_runs=10_000_000)
        for op in ("Identity", "Relu"):
            path = scratch / f"trivial_{op}.onnx"
            trivial_model(path, op)
            j = run_agent(variants[0], [str(path)], limits, args.seed)
            s = j["timing"]["summary"]
            o = OrtModel(path).time(limits, np_rng)
            floor.append({"op": op, "agent": s, "valid": j["valid"], "ort": o})
        results["floor"] = floor

    load_end = loadavg()
    elapsed = time.time() - started

    # ---------------- report ----------------
    out.append("# nasflat-agent (tract) vs onnxruntime")
    out.append("")
    out.append("Generated by `agent/benches/agent_vs_onnxruntime.py`; rerun it to refresh.")
    out.append("")
    out.append(f"- command: `{command}`")
    out.append(f"- seed: {args.seed}")
    out.append(f"- date (UTC): {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M')}")
    out.append(f"- machine: {cpu_model()}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}, governor {governor()}")
    target_triple = AGENT_MACHINE.get("target", "?")
    tract_version = AGENT_MACHINE.get("tract_version", "?")
    out.append(f"- agent: {agent_version} ({target_triple}, tract {tract_version}), binary `{args.agent}`")
    out.append(f"- onnxruntime {ort.__version__} (CPUExecutionProvider), onnx {onnx.__version__}, numpy {np.__version__}, Python {platform.python_version()}")
    out.append(f"- load average (1/5/15 min): {load_start} at start, {load_end} at end; run took {elapsed / 60:.1f} min")
    out.append("")
    out.append(
        "Settings. tract: the agent's `measure FILE --json`, 1 thread unless noted, "
        "its own warm-up (5 runs) and timing loop. onnxruntime: `intra_op_num_threads=1`, "
        "`inter_op_num_threads=1`, `ORT_SEQUENTIAL`, `ORT_ENABLE_ALL` (and, for reference, "
        "`ORT_ENABLE_BASIC`), the same loop in Python (5 warm-ups, then runs until both the "
        "minimum count and the minimum time are reached, fresh random input per run drawn "
        "outside the timed region). Both runtimes load the same ONNX file "
        "(`nasflat-onnx export`, weight seed 0)."
    )
    out.append("")

    if h2h_rows:
        names = [v.name for v in variants]
        out.append("## 1. Head to head (median ms, lower is better)")
        out.append("")
        out.append(
            f"{args.rounds} interleaved rounds per model (order reversed every other round); "
            f"each round is one agent invocation / one ORT loop with >= {args.h2h_min_runs} runs "
            f"and >= {args.h2h_min_ms} ms. Cell = median of the round medians."
        )
        out.append("")
        header = ["model"] + [f"{n} ms" for n in names] + ["ort ms"]
        if not args.no_ort_basic:
            header.append("ort basic ms")
        # Variants that run onnxruntime are also compared with the C API loop.
        on_c = [v.name for v in variants if "ort" in v.flags] if args.ort_ref else []
        if args.ort_ref:
            header.append("ort C API ms")
        header += ["tract/ort"] + [f"{n}/ort" for n in names[1:]] + [f"{n}/C API" for n in on_c]
        rows = []
        ratios = {n: [] for n in names}
        c_ratios = {n: [] for n in on_c}
        for row in h2h_rows:
            a = row["agg"]
            o = a["ort"]["median_ms"]
            cells = [row["model"]] + [fmt(a[n]["median_ms"]) for n in names] + [fmt(o)]
            if not args.no_ort_basic:
                cells.append(fmt(a["ort-basic"]["median_ms"]))
            if args.ort_ref:
                cells.append(fmt(a["ort-c"]["median_ms"]))
            for n in names:
                ratios[n].append(a[n]["median_ms"] / o)
            cells += [f"{a[n]['median_ms'] / o:.2f}" for n in names]
            for n in on_c:
                c_ratios[n].append(a[n]["median_ms"] / a["ort-c"]["median_ms"])
                cells.append(f"{c_ratios[n][-1]:.3f}")
            rows.append(cells)
        extra = (0 if args.no_ort_basic else 1) + (1 if args.ort_ref else 0)
        gm = ["**geomean ratio**"] + [""] * (len(names) + 1 + extra)
        gm += [f"**{geomean(ratios[n]):.2f}**" for n in names]
        gm += [f"**{geomean(c_ratios[n]):.3f}**" for n in on_c]
        rows.append(gm)
        out += table(header, rows)
        out.append("")
        spaces = sorted({r["space"] for r in h2h_rows})
        for sp in spaces:
            sub = [i for i, r in enumerate(h2h_rows) if r["space"] == sp]
            out.append(
                f"- geomean tract/ort on {sp}: "
                + ", ".join(f"{n} {geomean([ratios[n][i] for i in sub]):.2f}" for n in names)
            )
        # Min-based ratio: less sensitive to the machine's load.
        mins = [r["agg"]["tract"]["min_ms"] / r["agg"]["ort"]["min_ms"] for r in h2h_rows]
        out.append(f"- geomean tract/ort of the *fastest* runs (load-insensitive): {geomean(mins):.2f}")
        bad = sum(r["invalid"] for r in h2h_rows)
        out.append(f"- agent samples flagged invalid: {bad}")
        out.append("")
        out.append("Variants:")
        out.append("")
        for v in variants:
            out.append(f"- `{v.name}`: {v.describe()}")
        out.append("")
        out.append("Architectures:")
        out.append("")
        for row in h2h_rows:
            out.append(f"- {row['model']}: `{row['arch']}`")
        out.append("")

    if rep:
        names = list(rep)
        out.append("## 2. Repeatability (NB201 index 0, separate agent invocations)")
        out.append("")
        n = len(rep[names[0]]["medians_ms"])
        out.append(
            f"`nasflat-agent measure --space nb201 --index 0 --json` run {n} times per variant "
            "(agent defaults: >= 20 runs, >= 1000 ms), variants interleaved."
        )
        out.append("")
        header = ["invocation"]
        for name in names:
            header += [f"`{name}` median ms", "min ms", "within-run CV"]
        rows = []
        for i in range(n):
            row = [str(i + 1)]
            for name in names:
                r = rep[name]
                row += [fmt(r["medians_ms"][i]), fmt(r["mins_ms"][i]), f"{r['within_run_cv'][i]:.1%}"]
            rows.append(row)
        out += table(header, rows)
        out.append("")
        for name in names:
            r = rep[name]
            out.append(
                f"- `{name}`: **CV of the reported median across invocations: {r['cv_of_median']:.1%}** "
                f"(mean {statistics.fmean(r['medians_ms']):.3f} ms, std {statistics.stdev(r['medians_ms']) if n > 1 else 0:.3f} ms); "
                f"CV of the min: {r['cv_of_min']:.1%}"
            )
        out.append("")

    if rank:
        names = list(rank["tract_ms"])
        out.append(f"## 3. Rank agreement over {len(rank['indices'])} random NB201 architectures")
        out.append("")
        out.append(
            f"Indices drawn with `random.Random({args.seed})` after the head-to-head picks; "
            f"per model >= {args.rank_min_runs} runs and >= {args.rank_min_ms} ms for each runtime "
            "(tract variants: " + ", ".join(f"`{n}`" for n in names) + "), the order of the runtimes "
            "reversed for every other model."
        )
        out.append("")
        st = rank["stats"]
        rows = [
            ["Spearman rho vs ort medians"] + [f"**{st[n]['spearman']:.3f}**" for n in names],
            ["Kendall tau-b vs ort"] + [f"{st[n]['kendall']:.3f}" for n in names],
            ["Pearson of log latencies vs ort"] + [f"{st[n]['pearson_log']:.3f}" for n in names],
            ["geomean tract/ort"] + [f"{st[n]['ratio_geomean']:.2f}" for n in names],
            ["tract median range ms"]
            + [f"{min(rank['tract_ms'][n]):.3f} .. {max(rank['tract_ms'][n]):.3f}" for n in names],
        ]
        for op in rank["ops"]:
            rows.append(
                [f"Spearman of the tract/ort ratio vs the number of `{op}` edges"]
                + [f"{st[n]['ratio_vs_ops'][op]:.3f}" for n in names]
            )
        out += table(["statistic"] + [f"`{n}`" for n in names], rows)
        out.append("")
        out.append(f"- ort median range: {min(rank['ort_ms']):.3f} .. {max(rank['ort_ms']):.3f} ms")
        for k, v in rank["between"].items():
            out.append(f"- Spearman {k}: {v:.3f}")
        out.append(f"- agent samples flagged invalid: {rank['invalid']}")
        out.append("")
        out.append("<details><summary>per-architecture medians (ms)</summary>")
        out.append("")
        out += table(
            ["NB201 index"] + names + ["ort", "avg_pool / conv3x3 / conv1x1 edges"],
            [
                [str(i)] + [fmt(rank["tract_ms"][n][k]) for n in names] + [fmt(rank["ort_ms"][k])]
                + ["/".join(str(rank["ops"][op][k]) for op in rank["ops"])]
                for k, i in enumerate(rank["indices"])
            ],
        )
        out.append("")
        out.append("</details>")
        out.append("")

    if floor:
        out.append("## 4. Floor: a trivial [1,1] model")
        out.append("")
        out.append(
            "One-node ONNX graphs built with the `onnx` package (opset 17). The agent's median is the "
            "smallest latency it can resolve: tract's per-inference overhead (state, input "
            "hand-over, output) plus `Instant::now()`; below it, differences between models are noise."
        )
        out.append("")
        rows = [
            [
                f["op"], fmt(f["agent"]["median_ms"] * 1e3, 2), fmt(f["agent"]["min_ms"] * 1e3, 2),
                f"{f['agent']['p99_ms'] * 1e3:.2f}", f"{f['agent']['runs']}", "yes" if f["valid"] else "no",
                fmt(f["ort"]["median_ms"] * 1e3, 2),
            ]  # fmt: skip
            for f in floor
        ]
        out += table(
            ["model", "agent median us", "agent min us", "agent p99 us", "agent runs", "valid", "ort (via Python) median us"],
            rows,
        )
        out.append("")
        out.append(
            "The ORT column includes the Python call into `InferenceSession.run` (~10 us), "
            "so it bounds ORT's per-call cost from above; it is not comparable to the agent's floor."
        )
        out.append("")

    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1))
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
