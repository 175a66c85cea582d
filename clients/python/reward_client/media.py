"""Turns what trainers hold into the service's message shapes: PIL images, numpy arrays, file paths, bytes and
URLs become image parts ({"type": "image", "data": <base64>} or {"type": "image", "url": ...}); TRL's
multimodal content parts ({"type": "image", "image": <PIL>}, {"type": "image"} placeholders filled from the
`images` column, {"type": "image_url", ...}) become the same. PIL and numpy are optional: a numpy array is
encoded to PNG with the standard library (zlib) when PIL is absent."""
import base64
import io
import os
import struct
import zlib


def _png_from_array(arr):
    """PNG bytes of an HxW, HxWx1, HxWx3 or HxWx4 array (uint8, or floats in 0..1), standard library only."""
    shape = tuple(arr.shape)
    kind = getattr(arr.dtype, "kind", "u")
    if kind == "f":
        arr = (arr.clip(0, 1) * 255 + 0.5).astype("uint8")
    elif kind == "b":
        arr = arr.astype("uint8") * 255
    elif str(arr.dtype) != "uint8":
        arr = arr.clip(0, 255).astype("uint8")
    if len(shape) == 2:
        h, w, c = shape[0], shape[1], 1
    elif len(shape) == 3 and shape[2] in (1, 3, 4):
        h, w, c = shape
    elif len(shape) == 3 and shape[0] in (1, 3, 4):  # CHW (torch-style)
        arr = arr.transpose(1, 2, 0)
        h, w, c = arr.shape
    else:
        raise ValueError("image array must be HxW, HxWx{1,3,4} or {1,3,4}xHxW, got shape %s" % (shape,))
    color = {1: 0, 3: 2, 4: 6}[c]
    raw = arr.reshape(h, w * c).tobytes() if hasattr(arr, "reshape") else bytes(arr)
    stride = w * c
    rows = b"".join(b"\x00" + raw[y * stride:(y + 1) * stride] for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b""))


def _is_pil(obj):
    return hasattr(obj, "save") and hasattr(obj, "mode") and hasattr(obj, "size")


def _is_array(obj):
    return hasattr(obj, "shape") and hasattr(obj, "dtype") and hasattr(obj, "tobytes")


def encode_image(obj):
    """An image part of the service for a PIL image, a numpy array, a path, raw bytes, a data: or http(s) URL,
    or an image part already in the service's shape."""
    if isinstance(obj, dict) and obj.get("type") == "image" and any(k in obj for k in ("data", "url", "file", "sha256")):
        return {k: obj[k] for k in ("type", "data", "url", "file", "sha256") if k in obj}
    if _is_pil(obj):
        img = obj if obj.mode in ("RGB", "RGBA", "L", "LA", "P", "1") else obj.convert("RGB")
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return {"type": "image", "data": base64.b64encode(buf.getvalue()).decode("ascii")}
    if _is_array(obj):
        return {"type": "image", "data": base64.b64encode(_png_from_array(obj)).decode("ascii")}
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"type": "image", "data": base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, (str, os.PathLike)):
        s = os.fspath(obj)
        if s.startswith(("http://", "https://")):
            return {"type": "image", "url": s}
        if s.startswith("data:"):
            head, _, payload = s.partition(",")
            if not head.endswith(";base64"):
                raise ValueError("data: image URLs must be base64")
            return {"type": "image", "data": payload}
        with open(s, "rb") as f:
            return {"type": "image", "data": base64.b64encode(f.read()).decode("ascii")}
    raise TypeError("cannot encode %s as an image (PIL image, numpy array, path, bytes or URL)" % type(obj).__name__)


def _content(content, images):
    """A message's content in the service's shape; `images` is an iterator feeding {"type": "image"} placeholders."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    parts = []
    for part in content:
        if isinstance(part, str):
            parts.append({"type": "text", "text": part})
            continue
        kind = part.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": part.get("text") or ""})
        elif kind == "image":
            if any(part.get(k) is not None for k in ("data", "url", "file", "sha256")):
                parts.append(encode_image(part))  # already the service's shape (sha256: media sent before)
                continue
            src = next((part[k] for k in ("image", "path") if part.get(k) is not None), None)
            if src is None:
                try:
                    src = next(images)
                except StopIteration:
                    raise ValueError("an image placeholder has no image (pass images=... or put the image in the part)")
            parts.append(encode_image(src))
        elif kind == "image_url":
            url = part.get("image_url")
            parts.append(encode_image(url.get("url") if isinstance(url, dict) else url))
        elif kind == "video":
            parts.append({k: part[k] for k in ("type", "data", "url", "file") if k in part})
        else:
            raise ValueError("unsupported content part type %r" % (kind,))
    return parts


def to_service_messages(messages, images=None):
    """Chat messages as the service takes them: content parts converted (images encoded), tool messages and
    tool_calls passed through (the service renders them, see its README), None content kept as None.
    `images`: the sample's images, in order, for {"type": "image"} placeholders (TRL's `images` column)."""
    if images is not None and not isinstance(images, (list, tuple)):
        images = [images]
    it = iter(images or [])
    out = []
    for m in messages:
        msg = {"role": m["role"], "content": _content(m.get("content"), it)}
        for key in ("tool_calls", "name", "tool_call_id"):
            if m.get(key) is not None:
                msg[key] = m[key]
        out.append(msg)
    return out
