// A TCP proxy in front of a real service (Redis) that a test can break the way networks break:
// `cut()` drops every connection and refuses new ones (a dead host or a closed port), `stall()`
// keeps the connections open but holds back every byte either way (a partition while TCP keeps
// retransmitting: commands hang until the client's own timeout, and arrive once it heals), and
// `restore()` heals both. The shared service itself is never touched.
import { once } from 'node:events'
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net'

export interface TcpProxy {
  /** the proxy's port on 127.0.0.1 */
  readonly port: number
  /** `target` URL with the proxy's host and port (e.g. redis://127.0.0.1:<port>) */
  url: (target: string) => string
  cut: () => Promise<void>
  stall: () => void
  restore: () => Promise<void>
  close: () => Promise<void>
}

export async function startTcpProxy (targetHost: string, targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<Socket>()
  let stalled = false
  /** bytes held back while stalled, in arrival order */
  let held: Array<{ to: Socket, chunk: Buffer }> = []
  const onConnection = (client: Socket): void => {
    const upstream = connect(targetPort, targetHost)
    sockets.add(client)
    sockets.add(upstream)
    const forget = (): void => { sockets.delete(client); sockets.delete(upstream); client.destroy(); upstream.destroy() }
    client.on('close', forget)
    upstream.on('close', forget)
    client.on('error', forget)
    upstream.on('error', forget)
    const forward = (to: Socket) => (chunk: Buffer): void => {
      if (stalled) held.push({ to, chunk })
      else to.write(chunk)
    }
    client.on('data', forward(upstream))
    upstream.on('data', forward(client))
  }
  let server: Server = createServer(onConnection)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as AddressInfo).port

  const stop = async (): Promise<void> => {
    if (!server.listening) return
    const closed = new Promise((resolve) => server.close(resolve))
    for (const socket of sockets) socket.destroy()
    sockets.clear()
    held = []
    await closed
  }
  return {
    port,
    url: (target) => {
      const url = new URL(target)
      url.hostname = '127.0.0.1'
      url.port = String(port)
      return url.toString()
    },
    cut: stop,
    stall: () => { stalled = true },
    async restore () {
      stalled = false
      for (const { to, chunk } of held) if (!to.destroyed) to.write(chunk)
      held = []
      if (server.listening) return
      server = createServer(onConnection)
      server.listen(port, '127.0.0.1')
      await once(server, 'listening')
    },
    close: stop
  }
}
