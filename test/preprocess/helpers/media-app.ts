// An app with the real media path (sharp, ffmpeg, IXC transforms, cache) in front of a fake engine whose vision
// graph returns deterministic embeddings of the right shape and counts its runs.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../../src/app.ts'
import type { VisionOutput } from '../../../src/engine/types.ts'
import { ModelRegistry } from '../../../src/models/registry.ts'
import type { ModelVersion } from '../../../src/models/model-version.ts'
import { imageTokenCount } from '../../../src/preprocess/image/hd-transform.ts'
import { FakeEngine } from '../../helpers/fake-engine.ts'
import { fakeModel } from '../../helpers/fake-model.ts'
import { testConfig } from '../../helpers/build-app.ts'


const G = (rows: string[]) => rows
// A 5x7 font covering "<IMAGE 0123456789>" is the trainer's business; tests only need a few glyphs.
export const labelFont = {
  width: 5,
  height: 7,
  glyphs: {
    '<': G(['00010', '00100', '01000', '10000', '01000', '00100', '00010']),
    '>': G(['01000', '00100', '00010', '00001', '00010', '00100', '01000']),
    I: G(['11111', '00100', '00100', '00100', '00100', '00100', '11111']),
    '0': G(['01110', '10001', '10011', '10101', '11001', '10001', '01110']),
  },
}

export const preprocess = {
  image: {
    tile_size: 112, patch_size: 14, hd_num: 4, hd_num_multi: 2, resize: 'pil_bilinear', pad_color: [255, 255, 255],
    pad_side: 'bottom', transpose_portrait: true, mean: [0.48145466, 0.4578275, 0.40821073], std: [0.26862954, 0.26130258, 0.27577711],
    global_view: 'bicubic', merge: '2x2',
  },
  video: { fps: 1, max_frames: 8, frame_long_side: 224, layout: 'ixc_stack' as const, header_height: 20, gap: 10, line_width: 2, label_scale: 2, label_font: labelFont },
}

export class VisionCountingEngine extends FakeEngine {
  visionRuns: Array<{ height: number; width: number; sum: number }> = []
  override async runVision(_key: string, image: Float32Array, height: number, width: number): Promise<VisionOutput> {
    const tokens = imageTokenCount(height / 112, width / 112, 112, 14)
    const dim = 4
    let sum = 0
    for (const v of image) sum += v
    this.visionRuns.push({ height, width, sum })
    // deterministic, content-dependent embedding: the score then depends on the pixels
    const embeds = new Float32Array(tokens * dim).fill(sum / image.length)
    return { embeds, tokens, dim, inferenceMs: 0.1 }
  }
}

export function mediaModel(): ModelVersion {
  const m = fakeModel({ maxSeqLen: 4096 })
  return { ...m, manifest: { ...m.manifest, preprocess } as ModelVersion['manifest'] }
}

export async function buildMediaApp<E extends VisionCountingEngine = VisionCountingEngine>(
  env: Record<string, string> = {},
  engine: E = new VisionCountingEngine() as E,
): Promise<{ app: FastifyInstance; engine: E; tempRoot: string }> {
  const tempRoot = mkdtempSync(join(tmpdir(), 'media-app-'))
  const models = new ModelRegistry()
  models.publish(mediaModel())
  // pixel work inline: route tests stay fast (a worker thread costs ~1 s to start under tsx); the worker path is
  // covered by transformer.test.ts and the e2e test
  const app = buildApp(testConfig({ MEDIA_TEMP_DIR: tempRoot, MEDIA_WORKERS: '0', ...env }), { engine, models })
  app.addHook('onClose', async () => rmSync(tempRoot, { recursive: true, force: true }))
  await app.ready()
  return { app, engine, tempRoot }
}
