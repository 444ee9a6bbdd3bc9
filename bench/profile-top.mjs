/**
 * The top self-time entries of V8 CPU profiles (`node --cpu-prof`), idle left out, and the same by
 * package: where a server's busy time goes.
 *
 *   node bench/profile-top.mjs <file.cpuprofile> [entries=15]
 */
import { readFileSync } from "node:fs"

const [file, entries = "15"] = process.argv.slice(2)
const profile = JSON.parse(readFileSync(file, "utf8"))
const nodes = new Map(profile.nodes.map((node) => [node.id, node]))

const where = ({ callFrame }) => {
  const url = callFrame.url.replace(/^file:\/\/.*node_modules\//, "").replace(/^file:\/\/.*?\/(dist|src)\//, "$1/")
  return `${callFrame.functionName || "(anonymous)"} ${url}${url === "" ? "" : `:${callFrame.lineNumber + 1}`}`
}
const packageOf = ({ callFrame }) => {
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(callFrame.url)
  if (match !== null) return match[1]
  if (/\/(dist|src)\//.test(callFrame.url)) return "chatkit-backend"
  if (callFrame.url.startsWith("node:")) return "node core"
  return callFrame.url === "" ? callFrame.functionName : callFrame.url
}

const self = new Map()
const byPackage = new Map()
let busy = 0
profile.samples.forEach((id, i) => {
  const node = nodes.get(id)
  const ms = (profile.timeDeltas[i + 1] ?? 0) / 1000
  if (node.callFrame.functionName === "(idle)") return
  busy += ms
  self.set(where(node), (self.get(where(node)) ?? 0) + ms)
  byPackage.set(packageOf(node), (byPackage.get(packageOf(node)) ?? 0) + ms)
})

const print = (title, map, n) => {
  console.log(`\n${title}`)
  for (const [name, ms] of [...map].sort((a, b) => b[1] - a[1]).slice(0, n)) {
    console.log(`${ms.toFixed(0).padStart(7)} ms ${((100 * ms) / busy).toFixed(1).padStart(5)} %  ${name}`)
  }
}
console.log(`busy: ${busy.toFixed(0)} ms`)
print("self time", self, Number(entries))
print("self time by package", byPackage, 12)
