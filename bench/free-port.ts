// A free TCP port on 127.0.0.1 for a server child process (the OS picks it; the tiny race before the child
// binds it is acceptable in a bench). Shared by the bench scripts.
import { once } from 'node:events'
import net from 'node:net'

export async function freePort(): Promise<number> {
  const srv = net.createServer().listen(0, '127.0.0.1')
  await once(srv, 'listening')
  const port = (srv.address() as net.AddressInfo).port
  srv.close()
  return port
}
