/**
 * The bench's baseline: a bare node:http + pg server answering what chatkit-backend answers, the
 * fastest plain Node does it, from the same database: `GET /health` and the models page (the page
 * and count queries on every request, no cache, the same JSON). No auth, limits, logs or metrics:
 * it is the floor the ratios are measured against.
 *
 *   DATABASE_URL=postgres://... PORT=9000 node bench/baseline.mjs
 */
import { createServer } from "node:http"

import pg from "pg"

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10 })
const health = JSON.stringify({ status: "ok" })

const COLUMNS =
  "id, name, display_name, description, provider_id, provider_slug, supports_reasoning, supports_streaming, created_at, updated_at"

const modelsPage = async (url) => {
  const page = Math.max(1, Number(url.searchParams.get("page") ?? 1) || 1)
  const pageSize = Math.min(100, Math.max(1, Number(url.searchParams.get("page_size") ?? 20) || 20))
  const [rows, count] = await Promise.all([
    pool.query(`SELECT ${COLUMNS} FROM models ORDER BY display_name, id LIMIT $1 OFFSET $2`, [
      pageSize,
      (page - 1) * pageSize
    ]),
    pool.query("SELECT count(*)::int AS total FROM models")
  ])
  const total = count.rows[0].total
  const items = rows.rows.map((row) => ({ ...row, id: Number(row.id) }))
  return JSON.stringify({ items, total, page, page_size: pageSize, total_pages: Math.ceil(total / pageSize) })
}

const server = createServer((request, response) => {
  const url = new URL(request.url ?? "/", "http://baseline")
  if (url.pathname === "/health") {
    response.writeHead(200, { "content-type": "application/json" }).end(health)
  } else if (url.pathname === "/api/v1/models") {
    modelsPage(url).then(
      (body) => response.writeHead(200, { "content-type": "application/json" }).end(body),
      () => response.writeHead(500).end()
    )
  } else {
    response.writeHead(404).end()
  }
})

server.listen(Number(process.env.PORT ?? 9000), "127.0.0.1", () => process.stdout.write("listening\n"))
process.on("SIGTERM", () => server.close(() => pool.end().then(() => process.exit(0))))
