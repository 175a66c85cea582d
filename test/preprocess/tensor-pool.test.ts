// The tensor pool's rules: a buffer only for its exact length, most recent first, bounded in bytes (oldest out),
// detached or partial buffers refused, 0 bytes = no pooling.
import t from 'tap'
import { TensorPool } from '../../src/preprocess/image/tensor-pool.ts'

t.test('exact lengths, most recent first, counted', async (t) => {
  const pool = new TensorPool(1 << 20)
  const a = pool.take(100)
  const b = pool.take(100)
  const c = pool.take(50)
  t.match(pool.stats(), { hits: 0, misses: 3, buffers: 0, bytes: 0 })
  pool.give(a)
  pool.give(c)
  pool.give(b)
  pool.give(b) // twice: kept once
  t.match(pool.stats(), { buffers: 3, bytes: 1000 })
  t.not(pool.take(60), a, 'never a longer buffer than asked for')
  t.equal(pool.take(100), b, 'the most recently given of that length')
  t.equal(pool.take(100), a)
  t.not(pool.take(100), a, 'none left of that length: a fresh one')
  t.equal(pool.take(50), c)
  t.match(pool.stats(), { hits: 3, misses: 5, buffers: 0, bytes: 0 })
})

t.test('bounded in bytes: the oldest go first; what cannot be reused is dropped', async (t) => {
  const pool = new TensorPool(1000) // 250 floats
  const [a, b, c] = [new Float32Array(100), new Float32Array(100), new Float32Array(100)]
  pool.give(a)
  pool.give(b)
  pool.give(c)
  t.match(pool.stats(), { buffers: 2, bytes: 800 }, 'a went to make room for c')
  t.not(pool.take(100), a)
  pool.give(new Float32Array(300)) // larger than the whole pool
  const detached = new Float32Array(100)
  structuredClone(detached.buffer, { transfer: [detached.buffer] })
  pool.give(detached)
  pool.give(new Float32Array(new ArrayBuffer(800), 0, 100)) // a view of part of a buffer
  pool.give(undefined)
  t.match(pool.stats(), { buffers: 1, bytes: 400 })
  const off = new TensorPool(0)
  off.give(new Float32Array(4))
  t.match(off.stats(), { buffers: 0, bytes: 0 }, '0 bytes: nothing kept')
})
