"""Markdown tables from the JSON that tokens.py and torch_tokens.py wrote (device.sh runs it last, so the
numbers also reach the run call's output tail).

    python3 bench/gpu/summarize.py OUT_DIR
"""
from __future__ import annotations

import glob
import json
import os
import sys
from typing import Dict, List


def load(path: str):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None


def tokens_tables(docs: List[Dict]) -> List[str]:
    out: List[str] = []
    for d in docs:
        for m in d["models"]:
            out.append(f"\n### ORT {d['ort']['version']}: {m['label']} ({m['graph_bytes'] / 1e6:.0f} MB)")
            for s in m["sessions"]:
                if "error" in s:
                    out.append(f"- {s['provider']}: session FAILED: {s['error'][-400:]}")
                else:
                    pl = {ep: v["nodes"] for ep, v in s.get("placement", {}).items()}
                    cpu_ops = s.get("placement", {}).get("CPUExecutionProvider", {}).get("ops", {})
                    extra = f"; on CPU: {cpu_ops}" if s["provider"] != "CPU" and cpu_ops else ""
                    out.append(f"- {s['provider']}: session {s['create_seconds']} s, nodes per EP {pl}{extra}")
            cpu = {(r["batch"], r["tokens"]): r for r in m["results"] if r["provider"] == "CPU" and "error" not in r}
            out.append("\n| EP | B x T | median ms | tokens/s | vs CPU EP | max abs diff vs CPU |")
            out.append("|---|---|---|---|---|---|")
            for r in m["results"]:
                if "error" in r:
                    out.append(f"| {r['provider']} | {r['batch']} x {r['tokens']} | error: {r['error'][-150:]} | | | |")
                    continue
                c = cpu.get((r["batch"], r["tokens"]))
                sp = f"{r['tokens_per_s'] / c['tokens_per_s']:.2f}x" if c else "-"
                d_ = r.get("max_abs_diff_vs_cpu")
                out.append(f"| {r['provider']} | {r['batch']} x {r['tokens']} | {r['median_ms']} | {r['tokens_per_s']:.0f} "
                           f"| {sp} | {'-' if d_ is None else f'{d_:.2e}'} |")
    return out


def torch_table(d: Dict) -> List[str]:
    out = [f"\n### PyTorch {d['torch']} on {d['device_name']}",
           "\n| config | params | dtype | attention | B x T | median ms | tokens/s | ~TFLOP/s |", "|---|---|---|---|---|---|---|---|"]
    for r in d["results"]:
        if "error" in r:
            out.append(f"| {r['config']} | | {r.get('dtype', '')} | {r.get('attention', '')} | "
                       f"{r.get('batch', '')} x {r.get('tokens', '')} | error: {r['error'][-120:]} | | |")
            continue
        out.append(f"| {r['config']} | {r['num_params'] / 1e6:.0f} M | {r['dtype']} | {r['attention']} | {r['batch']} x "
                   f"{r['tokens']} | {r['median_ms']} | {r['tokens_per_s']:.0f} | {r['approx_tflops']} |")
    return out


def versus_table(tok: List[Dict], t: Dict) -> List[str]:
    """WebGPU EP against PyTorch on the same GPU, matched by architecture (hidden size, depth) and B x T."""
    torch_rows: Dict[tuple, Dict[str, float]] = {}
    for r in t["results"]:
        if "error" not in r:
            torch_rows.setdefault((r["hidden"], r["layers"], r["batch"], r["tokens"]), {})[
                f"{r['dtype']} {r['attention']}"] = r["tokens_per_s"]
    kinds = sorted({k for v in torch_rows.values() for k in v})
    out = ["\n### WebGPU EP vs PyTorch (tokens/s, same GPU)",
           "\n| model | B x T | CPU EP | WebGPU EP | " + " | ".join(f"torch {k}" for k in kinds) + " |",
           "|---|---|---|---|" + "---|" * len(kinds)]
    for d in tok:
        for m in d["models"]:
            c = m.get("config", {})
            key = (c.get("hidden_size"), c.get("num_layers"))
            by = {(r["provider"], r["batch"], r["tokens"]): r for r in m["results"] if "error" not in r}
            for (prov, b, tt), r in by.items():
                if prov != "WebGPU":
                    continue
                cpu = by.get(("CPU", b, tt))
                tr = torch_rows.get(key + (b, tt), {})
                out.append(f"| {m['label']} | {b} x {tt} | {cpu['tokens_per_s']:.0f} | " if cpu else
                           f"| {m['label']} | {b} x {tt} | - | ")
                out[-1] += f"{r['tokens_per_s']:.0f} | " + " | ".join(
                    f"{tr[k]:.0f}" if k in tr else "-" for k in kinds) + " |"
    return out


def main(out_dir: str) -> str:
    lines: List[str] = ["## GPU benchmark (bench/gpu/device.sh)"]
    tok = [d for d in (load(p) for p in sorted(glob.glob(os.path.join(out_dir, "tokens-*.json")))) if d]
    lines += tokens_tables(tok)
    t = load(os.path.join(out_dir, "torch.json"))
    if t:
        lines += torch_table(t)
        if tok:
            lines += versus_table(tok, t)
    text = "\n".join(lines) + "\n"
    print(text)
    return text


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("OUT", "."))
