// npm run build:wasm — assembles src/preprocess/image/pil-resample.wat into the committed pil-resample.wasm.
// The .wasm is committed because the service runs its TypeScript sources without a build step; the test
// test/preprocess/pil-resample-wasm.test.ts rebuilds it with buildResampleWasm() and compares the bytes, so the two
// cannot drift apart.
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import wabtInit from 'wabt'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
export const WAT_PATH = path.join(root, 'src/preprocess/image/pil-resample.wat')
export const WASM_PATH = path.join(root, 'src/preprocess/image/pil-resample.wasm')

export async function buildResampleWasm(watPath = WAT_PATH): Promise<Uint8Array> {
  const wabt = await wabtInit()
  const mod = wabt.parseWat(path.basename(watPath), readFileSync(watPath, 'utf8'), { simd: true })
  try {
    mod.resolveNames()
    mod.validate()
    // no name section and canonical LEBs: the bytes depend on the .wat alone
    return mod.toBinary({ log: false, write_debug_names: false, canonicalize_lebs: true }).buffer.slice()
  } finally {
    mod.destroy()
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const bytes = await buildResampleWasm()
  writeFileSync(WASM_PATH, bytes)
  console.log(`${path.relative(root, WASM_PATH)}: ${bytes.length} bytes`)
}
