"""Enforces ARCHITECTURE.md's dependency rule between the workspace crates.

Reads `cargo metadata` on stdin; fails (exit 1, naming the edge) when a crate
depends on a workspace crate the rule does not allow (dev-dependencies
included: a test may not pull a higher layer into a lower crate either).
"""
import json
import sys

ALLOWED = {
    "nasflat-shared": set(),
    "nasflat-onnx": {"nasflat-shared"},
    "nasflat-agent": {"nasflat-shared", "nasflat-onnx"},
    "nasflat-ort-reference": set(),  # a benchmark tool: no workspace crate
    "nasflat-encoders": {"nasflat-shared"},
    "nasflat-predictor": {"nasflat-shared", "nasflat-encoders"},
    "nasflat-host": {"nasflat-shared", "nasflat-encoders", "nasflat-predictor"},
    "nasflat-tests": None,  # end-to-end tests may use every crate
}

meta = json.load(sys.stdin)
members = {p["name"] for p in meta["packages"]}
bad = []
for package in meta["packages"]:
    allowed = ALLOWED.get(package["name"], "unknown")
    if allowed == "unknown":
        bad.append(f"{package['name']}: not in the dependency rule (.ci/dependency_rule.py)")
        continue
    if allowed is None:
        continue
    for dep in package["dependencies"]:
        if dep["name"] in members and dep["name"] not in allowed:
            bad.append(f"{package['name']} -> {dep['name']} ({dep['kind'] or 'normal'})")
for line in bad:
    print("dependency rule broken:", line)
sys.exit(1 if bad else 0)
