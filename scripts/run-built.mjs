// Runs a compiled entry point of dist/, compiling src/ first when dist/ is missing or out of date.
//
//   node --enable-source-maps scripts/run-built.mjs dist/main.js [args...]
//
// dist/ is up to date when every .js file in it is newer than every input: the files and folders
// under src/ (a folder's mtime changes when a file in it is added, removed or renamed),
// tsconfig.json, tsconfig.build.json and package.json. When it is not, the local TypeScript
// compiler builds into a temporary sibling folder; each file is then renamed into dist/ (atomic
// per file, so a server starting meanwhile never reads a half-written module) and the files whose
// source is gone are removed. Compiler output goes to stderr: stdout stays the program's own.
//
// The entry is imported in this process rather than spawned: one process, so SIGTERM/SIGINT reach
// the program's own handlers and its exit code is this script's. Plain JavaScript, no dependencies.
import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, readdirSync, renameSync, rmdirSync, rmSync, statSync, utimesSync } from "node:fs"
import { dirname, join, relative, resolve, sep } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const distDir = join(root, "dist")
const inputs = ["src", "tsconfig.json", "tsconfig.build.json", "package.json"].map((path) => join(root, path))
const tscBin = join(root, "node_modules", "typescript", "bin", "tsc")

const fail = (message) => {
  process.stderr.write(`${message}\n`)
  process.exit(1)
}

/** The files under `dir`, and its folders too when `withFolders`. */
const walk = (dir, withFolders) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    return entry.isDirectory() ? [...(withFolders ? [path] : []), ...walk(path, withFolders)] : [path]
  })

const newestInputMs = () =>
  Math.max(
    0,
    ...inputs.filter((path) => existsSync(path)).flatMap((path) =>
      statSync(path).isDirectory() ? [path, ...walk(path, true)] : [path]
    ).map((path) => statSync(path).mtimeMs)
  )

const oldestOutputMs = () => {
  if (!existsSync(distDir)) return -Infinity
  const times = walk(distDir, false).filter((path) => path.endsWith(".js")).map((path) => statSync(path).mtimeMs)
  return times.length === 0 ? -Infinity : Math.min(...times)
}

/** Why `target` must be (re)built, or undefined when it is up to date. */
const staleness = (target) => {
  if (!existsSync(target)) return `${relative(root, target)} is missing`
  // A deployment may ship dist/ without src/: nothing to compare with, nothing to rebuild from.
  if (!existsSync(join(root, "src"))) return undefined
  if (oldestOutputMs() < newestInputMs()) return "src/ changed since the last build"
  return undefined
}

const build = (reason) => {
  if (!existsSync(tscBin)) {
    fail(
      `dist/ is out of date (${reason}) and TypeScript is not installed: run \`npm ci\`, or \`npm run build\` where it is.`
    )
  }
  process.stderr.write(`Compiling src/ into dist/ (${reason})...\n`)
  const startedAt = Date.now()
  // Outputs are dated from the start of the build, so a source saved while tsc runs is newer and
  // rebuilt next time; or from the newest input if it is in the future, so it is not rebuilt forever.
  const builtAt = Math.max(startedAt, newestInputMs()) / 1000
  // A sibling of dist/, so the relative source paths in the source maps stay right after the move.
  const staging = join(root, `.dist-build-${process.pid}`)
  try {
    const result = spawnSync(process.execPath, [tscBin, "-p", join(root, "tsconfig.build.json"), "--outDir", staging], {
      cwd: root,
      stdio: ["ignore", 2, 2]
    })
    if (result.status !== 0) {
      rmSync(staging, { recursive: true, force: true }) // fail() exits: no finally
      fail(`Compilation failed (tsc exit ${result.status ?? result.signal}); dist/ was left as it was.`)
    }
    const emitted = new Set()
    for (const file of existsSync(staging) ? walk(staging, false) : []) {
      const name = relative(staging, file)
      const dest = join(distDir, name)
      emitted.add(name)
      mkdirSync(dirname(dest), { recursive: true })
      utimesSync(file, builtAt, builtAt)
      renameSync(file, dest)
    }
    for (const path of walk(distDir, true).reverse()) {
      const name = relative(distDir, path)
      if (statSync(path).isDirectory()) {
        if (readdirSync(path).length === 0) rmdirSync(path)
      } else if (!emitted.has(name)) {
        rmSync(path, { force: true })
      }
    }
    process.stderr.write(`Compiled in ${((Date.now() - startedAt) / 1000).toFixed(1)} s.\n`)
  } finally {
    rmSync(staging, { recursive: true, force: true })
  }
}

const [entry, ...args] = process.argv.slice(2)
if (entry === undefined) fail("usage: node --enable-source-maps scripts/run-built.mjs dist/<entry>.js [args...]")
const target = resolve(root, entry)
if (!target.startsWith(distDir + sep) || !target.endsWith(".js")) fail(`${entry}: not a .js file under dist/`)

const reason = staleness(target)
if (reason !== undefined) build(reason)
if (!existsSync(target)) fail(`${entry} was not produced by the build: is there a src/ file for it?`)

// The program sees the command line it would have had as `node dist/<entry>.js args...`.
process.argv = [process.execPath, target, ...args]
await import(pathToFileURL(target).href)
