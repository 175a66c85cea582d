"""ONNX Runtime for the exporter's parity check: python onnxruntime when importable, else onnxruntime-node (the
service's runtime) through node/run_onnx.mjs."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from typing import Dict, List, Tuple

import numpy as np

TRAINER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class OnnxRunner:
    """Runs a list of (model path, feeds) with python onnxruntime when present, else onnxruntime-node."""

    def __init__(self):
        try:
            import onnxruntime  # noqa: F401

            self.py = True
        except Exception:
            self.py = False

    def run(self, requests: List[Tuple[str, Dict[str, np.ndarray]]]) -> List[Dict[str, np.ndarray]]:
        if self.py:
            import onnxruntime as ort

            sess: Dict[str, object] = {}
            out = []
            for path, feeds in requests:
                if path not in sess:
                    sess[path] = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
                names = [o.name for o in sess[path].get_outputs()]
                out.append(dict(zip(names, sess[path].run(None, feeds))))
            return out
        with tempfile.TemporaryDirectory() as td:
            # one JSON line per request and per response (run_onnx.mjs streams them: a single document of a
            # full-width model's outputs exceeds V8's maximum string length)
            rq, rs = os.path.join(td, "rq.ndjson"), os.path.join(td, "rs.ndjson")
            with open(rq, "w") as f:
                for path, feeds in requests:
                    f.write(json.dumps({"model": path, "feeds": {
                        k: {"dtype": str(v.dtype), "dims": list(v.shape),
                            "b64": base64.b64encode(np.ascontiguousarray(v).tobytes()).decode()}
                        for k, v in feeds.items()}}) + "\n")
            p = subprocess.run(["node", os.path.join(TRAINER_DIR, "node", "run_onnx.mjs"), rq, rs],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if p.returncode != 0:
                raise RuntimeError("onnxruntime-node failed: " + p.stderr.decode(errors="replace")[-2000:])
            with open(rs) as f:
                res = [json.loads(line) for line in f if line.strip()]
        return [{k: np.frombuffer(base64.b64decode(v["b64"]), dtype=np.float32).reshape(v["dims"]) for k, v in r.items()}
                for r in res]
