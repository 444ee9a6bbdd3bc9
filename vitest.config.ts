import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
    // two files at once: most wait on child processes, sockets and the databases, so on 2 cores
    // this halves the run (vitest's default is one fork per core less one)
    poolOptions: { forks: { maxForks: 2 } },
    reporters: ["default"],
    coverage: {
      provider: "v8",
      include: ["src/**"],
      reporter: ["text-summary", "json-summary"],
      // enforced by .ci/run, which runs the suite with --coverage
      thresholds: { lines: 90, branches: 85 }
    }
  }
})
