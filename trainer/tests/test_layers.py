"""Imports between the trainer's modules flow one way (trainer/README.md §Layout): each module imports only
modules of a lower layer. A back edge is an import of a module in the same or a later layer, e.g. export
importing train (the stages are peers) or train importing evaluate. Count them in any checkout:

    /usr/bin/python3 trainer/tests/test_layers.py [path/to/reward_trainer]
"""
import ast
import os
import sys
from typing import List, Tuple

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "reward_trainer")

LAYERS = [
    # 0: no package imports
    ("config", "losses", "tokenizer_convert", "template", "collate", "onnx_runner", "safetensors", "fused_attention",
     "distributed", "shards", "onnx_weights"),
    # 1: primitives
    ("media", "tokenizer", "model"),
    # 2: the data set and the checkpoint
    ("data", "checkpoint"),
    # 3: parts the stages share
    ("model_io", "importers", "golden", "manifest", "world"),
    # 3: where a world's object lands among the vision tokens (world + data + collate + media)
    ("scene_tokens",),
    # 3a: checked preference files (importers + data) for fine-tuning
    ("dataset",),
    # 3b: graph writers (plain, then fused attention / external data on top)
    ("graphs",),
    ("weight_store",),  # parameters in a file, reward.onnx filled from it (import-hf's low-memory path)
    ("onnx_large",),
    # 4: the pipeline's stages, peers that never import each other
    ("generate", "pretrain", "train", "evaluate", "export"),
    # 5: a composite stage (checkpoint import -> export), then the command line that chains them, then its
    # `python3 -m` entry
    ("hf_import",),
    # fine-tuning: an init (hf_import or a checkpoint) -> train.lr_at / evaluate.summarize -> export
    ("finetune",),
    ("cli",),
    ("__main__",),
]
# A module not listed yet is treated as a shared part (layer 3) until it is placed.
DEFAULT_LAYER = 3
LAYER = {m: i for i, mods in enumerate(LAYERS) for m in mods}


def package_imports(path: str) -> List[Tuple[str, List[str]]]:
    """(imported package module, names) for every import of a sibling module, function-level ones included."""
    out = []
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.append((node.module.split(".")[0], [a.name for a in node.names]))
            else:  # from . import media
                out += [(a.name, [a.name]) for a in node.names]
    return out


def back_edges(package: str = PACKAGE) -> List[Tuple[str, str, List[str]]]:
    edges = []
    for f in sorted(os.listdir(package)):
        if not f.endswith(".py") or f == "__init__.py":
            continue
        src = f[:-3]
        for dst, names in package_imports(os.path.join(package, f)):
            if LAYER.get(dst, DEFAULT_LAYER) >= LAYER.get(src, DEFAULT_LAYER):
                edges.append((src, dst, names))
    return edges


def test_imports_flow_one_way():
    assert back_edges() == []


def test_counts_a_stage_importing_a_stage(tmp_path):
    (tmp_path / "export.py").write_text("from .train import load_model\nfrom .manifest import validate_manifest\n")
    (tmp_path / "model.py").write_text("def f():\n    from . import cli\n")
    assert back_edges(str(tmp_path)) == [("export", "train", ["load_model"]), ("model", "cli", ["cli"])]


if __name__ == "__main__":
    found = back_edges(sys.argv[1] if len(sys.argv) > 1 else PACKAGE)
    for src, dst, names in found:
        print(f"{src} -> {dst}: {', '.join(names)}")
    print(f"{len(found)} back edges, {sum(len(n) for _, _, n in found)} imported names")
