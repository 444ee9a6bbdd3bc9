import { build } from "esbuild"
import { describe, expect, it } from "vitest"

describe("the typed client", () => {
  it("bundles for a browser from the Api definition alone: no server code, no Node module", async () => {
    const result = await build({
      entryPoints: ["src/client/Client.ts"],
      bundle: true,
      platform: "browser",
      format: "esm",
      write: false,
      metafile: true,
      logLevel: "silent"
    })
    const inputs = Object.keys(result.metafile.inputs)
    const ours = inputs.filter((path) => path.startsWith("src/"))
    expect(ours.length).toBeGreaterThan(5)
    expect(ours.filter((path) => !/^src\/(api|domain|client)\//.test(path))).toEqual([])
    expect(inputs.filter((path) => /node_modules\/(pg|ioredis|@effect\/sql|@effect\/platform-node)\//.test(path)))
      .toEqual([])
  })
})
