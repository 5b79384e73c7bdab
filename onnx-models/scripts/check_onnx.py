#!/usr/bin/env python3
"""Validate exported ONNX files with the reference tooling.

For each file: `onnx.checker.check_model(model, full_check=True)` (schema,
types and shape inference), then, if onnxruntime is importable, one CPU run
on a seeded random input and the output shape.

    pip install onnx onnxruntime
    python3 onnx-models/scripts/check_onnx.py model.onnx [more.onnx ...]

Exit status: 0 if every file passes, 1 if any fails, 2 on bad usage.
"""

import argparse
import sys


def check(path, ort, np):
    import onnx

    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    line = f"{path}: ok (ir {model.ir_version}, opset {opset}, {len(model.graph.node)} nodes)"
    if ort is not None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        feed = {}
        rng = np.random.default_rng(0)
        for inp in session.get_inputs():
            if any(not isinstance(d, int) for d in inp.shape):
                raise ValueError(f"input {inp.name} has a dynamic shape {inp.shape}")
            feed[inp.name] = rng.standard_normal(inp.shape, dtype=np.float32)
        outputs = session.run(None, feed)
        if not all(np.isfinite(o).all() for o in outputs):
            raise ValueError("non-finite output")
        shapes = ", ".join(str(list(o.shape)) for o in outputs)
        line += f"; onnxruntime output shape {shapes}"
    return line


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help=".onnx files to check")
    args = parser.parse_args()
    try:
        import onnx  # noqa: F401
    except ImportError:
        print("error: the `onnx` package is required (pip install onnx)", file=sys.stderr)
        return 2
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError:
        np, ort = None, None
        print("onnxruntime not importable: running the checker only", file=sys.stderr)

    failed = 0
    for path in args.files:
        try:
            print(check(path, ort, np))
        except Exception as e:  # report every file, then fail
            failed += 1
            print(f"{path}: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
