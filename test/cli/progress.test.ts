import t from 'tap'
import { createProgress } from '../../src/cli/progress.ts'

function fakeStream(isTTY: boolean) {
  const writes: string[] = []
  return { stream: { isTTY, write: (s: string) => writes.push(s) > 0 } as unknown as NodeJS.WriteStream, writes }
}

t.test('terminal: one redrawn line; final line ends with a newline', async (t) => {
  const { stream, writes } = fakeStream(true)
  const p = createProgress('clean', 4, stream)
  p.tick(2)
  p.tick() // throttled (within 200 ms)
  p.done()
  t.equal(writes.length, 2)
  t.match(writes[0]!, /^\rclean \[#{15}\.{15}\] 2\/4 50\.0%/)
  t.match(writes[1]!, /3\/4 75\.0%.*\n$/)
})

t.test('not a terminal: plain lines, no carriage returns', async (t) => {
  const { stream, writes } = fakeStream(false)
  const p = createProgress('bon', 10, stream)
  p.tick(10)
  p.done()
  t.ok(writes.every((w) => !w.includes('\r') && w.endsWith('\n')))
  t.match(writes[writes.length - 1]!, /10\/10 100\.0%/)
})
