// Run ONNX graphs with onnxruntime-node (the runtime the service uses) for the exporter's parity check.
// usage: node run_onnx.mjs <requests.json> <responses.json>
// requests: [{ "model": path, "feeds": { name: { "dtype": "float32"|"int64", "dims": [..], "b64": raw LE bytes } } }]
// responses: [{ name: { "dims": [..], "b64": raw float32 LE bytes } }]
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(repoRoot, 'package.json'));
const ort = require('onnxruntime-node');

const requests = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const sessions = new Map();
const out = [];
for (const req of requests) {
  if (!sessions.has(req.model)) {
    sessions.set(req.model, await ort.InferenceSession.create(req.model, { graphOptimizationLevel: 'all', intraOpNumThreads: 1 }));
  }
  const feeds = {};
  for (const [name, f] of Object.entries(req.feeds)) {
    const buf = Buffer.from(f.b64, 'base64');
    const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
    const data = f.dtype === 'int64' ? new BigInt64Array(ab) : new Float32Array(ab);
    feeds[name] = new ort.Tensor(f.dtype, data, f.dims);
  }
  const res = await sessions.get(req.model).run(feeds);
  const o = {};
  for (const [name, t] of Object.entries(res)) {
    o[name] = { dims: t.dims, b64: Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('base64') };
  }
  out.push(o);
}
writeFileSync(process.argv[3], JSON.stringify(out));
