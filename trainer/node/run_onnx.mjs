// Run ONNX graphs with onnxruntime-node (the runtime the service uses) for the exporter's parity check.
// usage: node run_onnx.mjs <requests.ndjson> <responses.ndjson>
// requests, one JSON object per line: { "model": path, "feeds": { name: { "dtype": "float32"|"int64", "dims": [..], "b64": raw LE bytes } } }
// responses, one line per request: { name: { "dims": [..], "b64": raw float32 LE bytes } }
// One line per request/response, streamed: a full-width model's vision outputs for all golden cases exceed V8's
// maximum string length (~512 MiB) as one JSON document ("RangeError: Invalid string length").
// float16 graphs: float32 feeds are converted to the half inputs the graph declares and half outputs back to
// float32, as the service's engine does (src/engine/float16.ts; Node 20 has no Float16Array).
import { closeSync, createReadStream, existsSync, openSync, writeSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(repoRoot, 'package.json'));
// Before ORT loads (it reads the variable with getenv): telemetry off, or every run leaves an empty
// $TMPDIR/mat-debug-<pid>.log behind — one per export's parity check (the service does the same, src/engine/onnx.ts).
process.env.ORT_DISABLE_TELEMETRY ??= '1';
const ort = require('onnxruntime-node');

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
function toHalf(x) { // round to nearest even; the same bit arithmetic as src/engine/float16.ts
  f32[0] = x;
  const b = u32[0], sign = (b >>> 16) & 0x8000, exp = (b >>> 23) & 0xff, mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 112;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000, shift = 14 - e, half = 1 << (shift - 1), rest = m & ((1 << shift) - 1);
    let h = m >>> shift;
    if (rest > half || (rest === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++;
  return sign | h;
}
function fromHalf(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >>> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

const sessions = new Map();
const out = openSync(process.argv[3], 'w');
for await (const line of createInterface({ input: createReadStream(process.argv[2]), crlfDelay: Infinity })) {
  if (!line) continue;
  const req = JSON.parse(line);
  if (!sessions.has(req.model)) {
    // A graph with external data (a large import): no prepacking, so ONNX Runtime reads the weights through the
    // memory-mapped data file instead of copying every MatMul weight into process memory (3.7 GB of anonymous
    // memory -> 63 MB on the 4-layer full-width model, 1.4x slower per run): the parity check of a model larger
    // than RAM pages from disk instead of failing.
    const large = existsSync(req.model + '.data');
    sessions.set(req.model, await ort.InferenceSession.create(req.model, {
      graphOptimizationLevel: 'all', intraOpNumThreads: 1,
      ...(large ? { extra: { session: { disable_prepacking: '1' } } } : {}),
    }));
  }
  const session = sessions.get(req.model);
  const half = new Set(session.inputMetadata.filter((m) => m.isTensor && m.type === 'float16').map((m) => m.name));
  const feeds = {};
  for (const [name, f] of Object.entries(req.feeds)) {
    const buf = Buffer.from(f.b64, 'base64');
    const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
    const data = f.dtype === 'int64' ? new BigInt64Array(ab) : new Float32Array(ab);
    feeds[name] = half.has(name) && f.dtype === 'float32'
      ? new ort.Tensor('float16', Uint16Array.from(data, toHalf), f.dims)
      : new ort.Tensor(f.dtype, data, f.dims);
  }
  const res = await session.run(feeds);
  const o = {};
  for (const [name, t] of Object.entries(res)) {
    const d = t.type === 'float16' ? Float32Array.from(t.data, fromHalf) : t.data;
    o[name] = { dims: t.dims, b64: Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString('base64') };
  }
  writeSync(out, JSON.stringify(o) + '\n');
}
closeSync(out);
