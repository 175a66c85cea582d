"""The exporter's parity runner (reward_trainer.onnx_runner, onnxruntime-node through node/run_onnx.mjs here)."""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper

from reward_trainer.onnx_runner import OnnxRunner


def test_the_node_runner_leaves_no_ort_telemetry_files_in_tmpdir(tmp_path, monkeypatch):
    """ONNX Runtime's telemetry writes an empty $TMPDIR/mat-debug-<pid>.log (and a .ses file) at every start unless
    ORT_DISABLE_TELEMETRY is set before it loads: every export's parity check left one in /tmp (224 in a day of test
    runs). run_onnx.mjs sets it first, as the service does (src/engine/onnx.ts)."""
    monkeypatch.delenv("ORT_DISABLE_TELEMETRY", raising=False)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    path = str(tmp_path / "relu.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    runner = OnnxRunner()
    runner.py = False  # the node path: the one that runs where python onnxruntime is absent (CI)
    got = runner.run([(path, {"x": np.array([-1.0, 2.0], dtype=np.float32)})])[0]["y"]
    assert got.tolist() == [0.0, 2.0]
    assert [f for f in os.listdir(tmp) if f.startswith("mat-debug-") or f.endswith(".ses")] == []
