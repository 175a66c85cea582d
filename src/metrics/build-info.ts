// What this process is built from, for scorer_build_info and GET /info: the service's package version, the
// commit (GIT_COMMIT, set at image build time), Node and the ONNX Runtime package. Read from package.json
// files on disk, so the main thread never loads the native ORT binding (that stays in the engine worker).
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'

export interface BuildInfo {
  version: string
  commit: string
  node: string
  ort: string
}

const require = createRequire(import.meta.url)

function packageVersion(specifier: string): string {
  try {
    return String((JSON.parse(readFileSync(require.resolve(specifier), 'utf8')) as { version?: string }).version ?? 'unknown')
  } catch {
    return 'unknown'
  }
}

export function buildInfo(commit: string): BuildInfo {
  return {
    version: packageVersion('../../package.json'),
    commit,
    node: process.versions.node,
    ort: packageVersion('onnxruntime-node/package.json'),
  }
}
