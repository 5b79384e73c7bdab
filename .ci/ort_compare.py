"""Checks the agent's first inference against Python onnxruntime's.

usage: ort_compare.py MODEL.onnx TOL DUMP.json [DUMP.json ...]

Each DUMP is written by `nasflat-agent measure MODEL --dump-output DUMP`: the
inputs the agent drew and the outputs its runtime gave. Python onnxruntime
(ORT_ENABLE_ALL, one thread, as the agent's `--runtime ort`) runs MODEL on
the same inputs; every output must match bitwise or within TOL of the
largest output magnitude. Prints the worst difference per dump.
"""
import json
import sys

import numpy as np
import onnxruntime as ort

DTYPES = {"float": np.float32, "double": np.float64, "int64": np.int64,
          "int32": np.int32, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_}


def main():
    model, tol, dumps = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    failed = False
    for path in dumps:
        dump = json.load(open(path))
        feeds = {t["name"]: np.array(t["values"], dtype=DTYPES[t["dtype"]]).reshape(t["shape"])
                 for t in dump["inputs"]}
        expected = session.run(None, feeds)
        assert len(expected) == len(dump["outputs"]), f"{path}: output count"
        for want, got in zip(expected, dump["outputs"]):
            got_arr = np.array(got["values"], dtype=np.float64).reshape(got["shape"])
            want = want.astype(np.float64)
            assert want.shape == got_arr.shape, f"{path}: shape {got_arr.shape} vs {want.shape}"
            worst = float(np.max(np.abs(want - got_arr))) if want.size else 0.0
            scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
            bitwise = bool(np.array_equal(want.astype(np.float32), got_arr.astype(np.float32)))
            ok = bitwise or worst <= tol * scale
            failed |= not ok
            print(f"{path} ({dump['runtime']}) output {got['name']}: "
                  f"{'bitwise equal' if bitwise else f'max |diff| {worst:.3g} (scale {scale:.3g})'}"
                  f" vs Python onnxruntime {ort.__version__}: {'ok' if ok else 'FAIL'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
