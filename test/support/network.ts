import * as http from "node:http"
import * as net from "node:net"

import { Effect } from "effect"

/** A loopback port that was free a moment ago (the OS picks it). */
export const freePort = () =>
  new Promise<number>((resolve) => {
    const server = net.createServer().listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0))
    })
  })

/** A TCP server that accepts connections and never answers: a hung Redis. */
export const stalledServer = Effect.acquireRelease(
  Effect.async<{ server: net.Server; sockets: Set<net.Socket>; port: number }>((resume) => {
    const sockets = new Set<net.Socket>()
    const server = net.createServer((socket) => {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
      socket.on("error", () => undefined)
    })
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      resume(
        Effect.succeed({ server, sockets, port: typeof address === "object" && address !== null ? address.port : 0 })
      )
    })
  }),
  ({ server, sockets }) =>
    Effect.async<void>((resume) => {
      for (const socket of sockets) socket.destroy()
      server.close(() => resume(Effect.void))
    })
)

/** An HTTP server on 127.0.0.1 for the scope, its port; closed, with every connection, when the scope closes. */
export const localHttpServer = (handler: http.RequestListener) =>
  Effect.acquireRelease(
    Effect.async<http.Server>((resume) => {
      const server = http.createServer(handler)
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map((server) => (server.address() as net.AddressInfo).port))
