#!/usr/bin/env bash
# Choosing `nas --mode probed`'s plan on task ND's *source* devices only
# (docs/experiments/nas.md, "Probed search"). For each source s: pretrain on
# the other 8 (a task LOSO_s per source), draw k = 20 samples of s, and
# search under s's own 40th/75th/95th latency percentiles, once per plan.
# Run from the repository root; summarise with nas_probe_summary.py OUT_DIR.
#
# usage: [SOURCES="a b"] [PLANS="8,2,true,probed;..."] nas_probe_loso.sh HOST_BIN OUT_DIR [FIRST_SEED] [TRIALS]
# (a plan: probes,rounds,verify,modes; default: all sources, the four plans below)
set -euo pipefail
bin=$1 out=$2 seed=${3:-0} trials=${4:-5}
py=${PYTHON:-python3}
mkdir -p "$out"
$py - "$out" <<'PY'
import csv, gzip, json, os, sys
out = sys.argv[1]
tasks = json.load(open("data/tasks.json"))
nd = tasks["nb201"]["ND"]
loso = {"nb201": {}, "fbnet": {}}
for i, s in enumerate(nd["train"]):
    loso["nb201"]["LOSO_" + s] = {"task_index": 100 + i,
                                  "train": [x for x in nd["train"] if x != s], "test": [s]}
json.dump(loso, open(os.path.join(out, "loso_tasks.json"), "w"), indent=1)
rows = list(csv.reader(gzip.open("data/nb201/latency.csv.gz", "rt")))
names = rows[0][1:]
budgets = {}
for s in nd["train"]:
    j = names.index(s)
    col = sorted(float(r[j + 1]) for r in rows[1:] if r[j + 1])
    budgets[s] = [col[int(p / 100 * (len(col) - 1))] for p in (40, 75, 95)]
json.dump(budgets, open(os.path.join(out, "budgets.json"), "w"))
PY
sources=${SOURCES:-$($py -c "import json; print(' '.join(json.load(open('$out/budgets.json'))))")}
IFS=';' read -r -a plans <<< "${PLANS:-8,2,false,exhaustive,probed;4,1,true,probed;8,2,true,probed;12,3,true,probed}"
for s in $sources; do
  c=$($py -c "import json; print(','.join(map(str, json.load(open('$out/budgets.json'))['$s'])))")
  for plan in "${plans[@]}"; do
    IFS=, read -r probes rounds verify modes <<< "$plan"
    suffix=""; [ "$verify" = true ] && suffix=v
    name="$s-p${probes}r${rounds}$suffix"
    [ -s "$out/$name.json" ] && continue
    "$bin" nas --space nb201 --task "LOSO_$s" --tasks-file "$out/loso_tasks.json" --device "$s" \
      --latency-ms "$c" --mode "$modes" --probes "$probes" --probe-rounds "$rounds" \
      --probe-verify "$verify" --samples 20 --trials "$trials" --seed "$seed" \
      --pretrained-cache "$out/cache" --json "$out/$name.json.tmp" > "$out/$name.md" 2>> "$out/log"
    mv "$out/$name.json.tmp" "$out/$name.json"
  done
done
