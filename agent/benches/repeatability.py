#!/usr/bin/env python3
"""Repeatability of the agent's label across separate invocations.

For each background load (idle, one busy core, every core busy: busy loops
this script starts and kills by PID), each runtime (tract, `--runtime ort`)
and each model (NB201 #0 and third-party ONNX files), runs
`nasflat-agent measure ... --json --raw` N times, models and runtimes
interleaved within each invocation round, and reports the coefficient of
variation (std / mean over the N invocations) of:

- `label`: the agent's label (see "The label" in docs/agent-bench.md),
- candidate statistics recomputed from the same raw runs, to choose the
  label from measurements: the wall-clock median (the label before issue 16),
  the wall-clock minimum, the per-round quantile median on the wall clock,
  and on the thread CPU clock the plain median and minimum, the per-round
  quantile medians for quantiles 0 (round minimum), 0.25 and 0.5, the best
  round's median, and the label divided by the canary (the agent's fixed
  compute loop, timed before and after: does normalising by the core's
  current speed help?).

Also: how many samples settled, were disturbed, were timed more than once,
and the load average at the start and end of each load block (the machine
may be shared with other work: the table says so).

Only the standard library is needed:

    python3 agent/benches/repeatability.py --agent target/debug/nasflat-agent \
        --ort-lib /path/to/libonnxruntime.so.1.32.0 \
        --model-file .../light_squeezenet.onnx --model-file .../light_shufflenet.onnx \
        --out-md /tmp/repeat.md --json-out /tmp/repeat.json

The agent binary is copied to a scratch directory first, so a concurrent
cargo build cannot swap it in the middle of the run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOADS = {"idle": 0, "one-core": 1, "all-cores": None}


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def start_busy(n: int) -> list[subprocess.Popen]:
    return [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(n)
    ]


def stop_busy(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait()


def quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated quantile, as the agent's `stats::percentile`."""
    pos = q * (len(sorted_values) - 1)
    lo, hi = int(pos), min(int(pos) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def round_median(times: list[float], rounds: list[int], q: float) -> float:
    """Median over rounds of each round's q-quantile."""
    stats, start = [], 0
    for n in rounds:
        chunk = sorted(times[start : start + n])
        start += n
        if chunk:
            stats.append(quantile(chunk, q))
    return statistics.median(stats)


def round_stats(times: list[float], rounds: list[int], stat) -> list[float]:
    out, start = [], 0
    for n in rounds:
        chunk = sorted(times[start : start + n])
        start += n
        if chunk:
            out.append(stat(chunk))
    return out


def candidates(sample: dict) -> dict[str, float]:
    """The agent's label and other statistics of the same runs."""
    t = sample["timing"]
    wall, cpu = t["times_ms"], t["cpu_times_ms"]
    rounds = [r["runs"] for r in t["estimate"]["rounds"]]
    d = t["disturbance"]
    canary = (d["canary_before_ms"] + d["canary_after_ms"]) / 2
    label = t["estimate"]["verdict"]["label_ms"]
    return {
        "label": label,
        "wall median": statistics.median(wall),
        "wall min": min(wall),
        "wall round-q25": round_median(wall, rounds, 0.25),
        "cpu median": statistics.median(cpu),
        "cpu min": min(cpu),
        "cpu round-min": round_median(cpu, rounds, 0.0),
        "cpu round-q25": round_median(cpu, rounds, 0.25),
        "cpu round-median": round_median(cpu, rounds, 0.5),
        "cpu best round": min(round_stats(cpu, rounds, statistics.median)),
        "label / canary": label / canary,
    }


def measure(agent: Path, model: tuple[str, list[str]], runtime: list[str], extra: list[str]) -> dict:
    cmd = [str(agent), "measure", *model[1], *runtime, "--json", "--raw", *extra]
    started = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr}")
    sample = json.loads(out.stdout)
    t = sample["timing"]
    return {
        "seconds": time.monotonic() - started,
        "candidates": candidates(sample),
        "raw": {
            "times_ms": t["times_ms"],
            "cpu_times_ms": t["cpu_times_ms"],
            "rounds": [r["runs"] for r in t["estimate"]["rounds"]],
            "canary_ms": [t["disturbance"]["canary_before_ms"], t["disturbance"]["canary_after_ms"]],
            "load": [t["disturbance"]["load_before"], t["disturbance"]["load_after"]],
        },
        "settled": sample["timing"]["estimate"]["verdict"]["settled"],
        "disturbances": sample["timing"]["disturbance"]["kinds"],
        "preempted": sample["timing"]["disturbance"]["preempted_fraction"],
        "repeated": len(sample["repeated"]),
        "runs": len(sample["timing"]["times_ms"]),
        "rounds": len(sample["timing"]["estimate"]["rounds"]),
        "valid": sample["valid"],
    }


def cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.mean(values) if len(values) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", required=True, type=Path)
    ap.add_argument("--ort-lib", type=Path, help="libonnxruntime.so for --runtime ort (omit: tract only)")
    ap.add_argument("--model-file", action="append", default=[], type=Path)
    ap.add_argument("--nb201-index", type=int, action="append", default=None)
    ap.add_argument("--invocations", type=int, default=10)
    ap.add_argument("--loads", default="idle,one-core,all-cores")
    ap.add_argument("--agent-arg", action="append", default=[], help="extra agent argument (repeatable)")
    ap.add_argument("--out-md", type=Path)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="nasflat-repeat-"))
    agent = scratch / "nasflat-agent"
    shutil.copy2(args.agent, agent)
    models: list[tuple[str, list[str]]] = [
        (f"nb201 {i}", ["--space", "nb201", "--index", str(i)]) for i in (args.nb201_index or [0])
    ]
    models += [(p.stem, [str(p)]) for p in args.model_file]
    runtimes: list[tuple[str, list[str]]] = [("tract", ["--runtime", "tract"])]
    if args.ort_lib:
        runtimes.append(("ort", ["--runtime", "ort", "--ort-lib", str(args.ort_lib)]))
    cores = os.cpu_count() or 1
    started = _dt.datetime.now(_dt.timezone.utc)
    print(f"agent {args.agent}, {cores} cores, {args.invocations} invocations, agent seed 0 (the agent's default)", file=sys.stderr)

    results: dict = {"loads": {}}
    for load in args.loads.split(","):
        n_busy = LOADS[load] if LOADS[load] is not None else cores
        busy = start_busy(n_busy)
        time.sleep(2)
        block = {"busy_processes": n_busy, "load_start": loadavg(), "samples": {}}
        t0 = time.monotonic()
        try:
            for i in range(args.invocations):
                order = [(m, r) for m in models for r in runtimes]
                if i % 2:
                    order.reverse()
                for (mname, margs), (rname, rargs) in order:
                    s = measure(agent, (mname, margs), rargs, args.agent_arg)
                    block["samples"].setdefault(f"{rname}|{mname}", []).append(s)
                    print(f"{load} #{i} {rname} {mname}: label {s['candidates']['label']:.4f} ms, settled {s['settled']}, "
                          f"disturbed {s['disturbances']}, repeated {s['repeated']}", file=sys.stderr)
        finally:
            stop_busy(busy)
        block["load_end"] = loadavg()
        block["minutes"] = (time.monotonic() - t0) / 60
        results["loads"][load] = block

    results["date"] = started.strftime("%Y-%m-%d %H:%M UTC")
    results["command"] = " ".join(sys.argv)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1))
    md = render(results, models, runtimes, cores, args.invocations)
    if args.out_md:
        args.out_md.write_text(md)
    print(md)
    shutil.rmtree(scratch, ignore_errors=True)


def render(results: dict, models, runtimes, cores: int, n: int) -> str:
    names = list(next(iter(next(iter(results["loads"].values()))["samples"].values()))[0]["candidates"])
    lines = [
        f"- command: `{results['command']}`",
        f"- date: {results['date']}; {cores} logical cores; {n} invocations per cell, models and runtimes interleaved",
        "",
        "CV across invocations (std / mean of the statistic over the invocations), %:",
        "",
        "| load (busy loops; load avg start -> end) | runtime | model | " + " | ".join(names)
        + " | label mean ms | settled | disturbed | repeated | s per invocation |",
        "|---|---|---|" + "---:|" * (len(names) + 5),
    ]
    for load, block in results["loads"].items():
        for rname, _ in runtimes:
            for mname, _ in models:
                ss = block["samples"][f"{rname}|{mname}"]
                cvs = [cv([s["candidates"][k] for s in ss]) * 100 for k in names]
                lines.append(
                    f"| {load} ({block['busy_processes']}; {block['load_start'].split()[0]} -> {block['load_end'].split()[0]}) "
                    f"| {rname} | {mname} | " + " | ".join(f"{c:.2f}" for c in cvs)
                    + f" | {statistics.mean(s['candidates']['label'] for s in ss):.4f}"
                    f" | {sum(s['settled'] for s in ss)}/{len(ss)}"
                    f" | {sum(bool(s['disturbances']) for s in ss)}/{len(ss)}"
                    f" | {sum(s['repeated'] > 0 for s in ss)}/{len(ss)}"
                    f" | {statistics.mean(s['seconds'] for s in ss):.1f} |"
                )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
