"""Minimal safetensors reader/writer (no library for it is reachable here).

Format: 8-byte little-endian u64 N, then N bytes of UTF-8 JSON {name: {"dtype", "shape", "data_offsets": [b, e]},
optional "__metadata__": {str: str}}, then the byte buffer; offsets are relative to the buffer start, tensors are
little-endian, row-major, packed without gaps. The reader validates the whole header against the file size before
any tensor is read, so a truncated or corrupt file fails with a message naming the file and the problem, and it
reads one tensor at a time (the caller never holds more than one tensor of a shard it did not ask for).
"""
from __future__ import annotations

import json
import os
import struct
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import torch

# safetensors dtype name -> (torch dtype, bytes per element)
DTYPES: Dict[str, Tuple[torch.dtype, int]] = {
    "BF16": (torch.bfloat16, 2), "F16": (torch.float16, 2), "F32": (torch.float32, 4), "F64": (torch.float64, 8),
    "I64": (torch.int64, 8), "I32": (torch.int32, 4), "I16": (torch.int16, 2), "I8": (torch.int8, 1),
    "U8": (torch.uint8, 1), "BOOL": (torch.bool, 1),
}
NAMES = {dt: name for name, (dt, _) in DTYPES.items()}
MAX_HEADER = 100 << 20  # the reference implementation's limit; a larger value means a corrupt length prefix


class SafetensorsError(ValueError):
    pass


class Entry:
    __slots__ = ("name", "dtype", "shape", "begin", "end")

    def __init__(self, name: str, dtype: str, shape: List[int], begin: int, end: int):
        self.name, self.dtype, self.shape, self.begin, self.end = name, dtype, shape, begin, end


def read_header(path: str) -> Tuple[Dict[str, Entry], Dict[str, str], int]:
    """-> (entries by name, metadata, absolute offset of the byte buffer). Checks everything but the tensor bytes."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise SafetensorsError(f"{path}: truncated safetensors file ({size} bytes, no header length)")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER or 8 + n > size:
            raise SafetensorsError(f"{path}: header length {n} does not fit the file ({size} bytes): truncated or not "
                                   "a safetensors file")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    entries: Dict[str, Entry] = {}
    spans = []
    for name, e in header.items():
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError(f"{path}: tensor {name!r}: header entry must have dtype, shape, data_offsets")
        dt, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
        if dt not in DTYPES:
            raise SafetensorsError(f"{path}: tensor {name!r}: unsupported dtype {dt!r}")
        if (not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape)
                or not isinstance(offs, list) or len(offs) != 2 or not all(isinstance(o, int) for o in offs)):
            raise SafetensorsError(f"{path}: tensor {name!r}: bad shape or data_offsets")
        count = 1
        for s in shape:
            count *= s
        if offs[1] - offs[0] != count * DTYPES[dt][1] or offs[0] < 0:
            raise SafetensorsError(f"{path}: tensor {name!r}: data_offsets {offs} do not match {dt}{shape}")
        entries[name] = Entry(name, dt, shape, offs[0], offs[1])
        spans.append((offs[0], offs[1], name))
    spans.sort()
    pos = 0
    for b, e, name in spans:
        if b != pos:
            raise SafetensorsError(f"{path}: tensor {name!r} starts at {b}, expected {pos} (overlap or gap)")
        pos = e
    if 8 + n + pos != size:
        what = "truncated" if 8 + n + pos > size else "has trailing bytes"
        raise SafetensorsError(f"{path}: file {what}: header describes {8 + n + pos} bytes, file has {size}")
    return entries, meta, 8 + n


def iter_tensors(path: str, names: Optional[Iterable[str]] = None) -> Iterator[Tuple[str, torch.Tensor]]:
    """Yield (name, tensor) one at a time in file order; each tensor owns its memory (nothing mmapped)."""
    entries, _, base = read_header(path)
    want = set(entries) if names is None else set(names)
    with open(path, "rb") as f:
        for e in sorted(entries.values(), key=lambda e: e.begin):
            if e.name not in want:
                continue
            f.seek(base + e.begin)
            buf = bytearray(e.end - e.begin)
            if f.readinto(buf) != len(buf):
                raise SafetensorsError(f"{path}: tensor {e.name!r}: short read (file changed while reading?)")
            dt = DTYPES[e.dtype][0]
            t = torch.frombuffer(buf, dtype=dt) if buf else torch.empty(0, dtype=dt)
            yield e.name, t.reshape(e.shape)


def load(path: str) -> Dict[str, torch.Tensor]:
    return dict(iter_tensors(path))


def write(path: str, tensors: Iterable[Tuple[str, torch.Tensor]], metadata: Optional[Dict[str, str]] = None) -> None:
    """Write (name, tensor) pairs; the header is built from shapes first, then tensors are streamed one by one."""
    items = list(tensors)
    header: Dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    pos = 0
    for name, t in items:
        if t.dtype not in NAMES:
            raise SafetensorsError(f"tensor {name!r}: dtype {t.dtype} has no safetensors name")
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [pos, pos + nbytes]}
        pos += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the reference writer pads to 8 so the buffer is aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for _, t in items:
            f.write(_bytes(t))


def _bytes(t: torch.Tensor) -> bytes:
    t = t.detach().contiguous().cpu()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.int16)  # numpy has no bfloat16
    return t.numpy().tobytes()
