// The lint and format rules of Effect's own repositories (v3 branch): dprint through
// @effect/eslint-plugin at line width 120 (it also sorts imports), typescript-eslint's recommended rules.
import effect from "@effect/eslint-plugin"
import js from "@eslint/js"
import tseslint from "typescript-eslint"

/** The barrel loads every module of the package, the API readers' 21 MB of bundled strings included. */
const modulesOnly = [{
  name: "@effect/platform",
  message:
    "import the module itself (import * as HttpApi from \"@effect/platform/HttpApi\"): see src/platform/ApiDocs.ts"
}]

/** The dependency arrows: features -> api, domain, platform; api -> domain; platform -> domain; nothing else. */
const layer = (folder, forbidden) => ({
  files: [`src/${folder}/**/*.ts`],
  rules: {
    "no-restricted-imports": ["error", {
      paths: modulesOnly,
      patterns: forbidden.map((name) => ({
        group: [`**/${name}/*`, "!@effect/**"],
        message: `src/${folder} must not import src/${name}: see "Dependency direction" in the README`
      }))
    }]
  }
})

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "coverage/", ".data/", ".scratch/", ".dist-build-*/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  ...effect.configs.dprint,
  {
    languageOptions: {
      globals: {
        process: "readonly",
        console: "readonly",
        URL: "readonly",
        TextEncoder: "readonly",
        setTimeout: "readonly"
      }
    },
    rules: {
      "object-shorthand": "error",
      "no-fallthrough": "off",
      "require-yield": "off",
      "@typescript-eslint/array-type": ["error", { default: "generic", readonly: "generic" }],
      "@typescript-eslint/consistent-type-imports": ["error", { fixStyle: "inline-type-imports" }],
      "@typescript-eslint/no-non-null-assertion": "off",
      "@typescript-eslint/no-empty-object-type": "off",
      "@typescript-eslint/no-namespace": "off",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@effect/dprint": ["error", {
        config: {
          indentWidth: 2,
          lineWidth: 120,
          semiColons: "asi",
          quoteStyle: "alwaysDouble",
          trailingCommas: "never",
          operatorPosition: "maintain",
          "arrowFunction.useParentheses": "force"
        }
      }]
    }
  },
  { files: ["src/**/*.ts"], rules: { "no-restricted-imports": ["error", { paths: modulesOnly }] } },
  layer("domain", ["api", "platform", "features", "client", "cli"]),
  layer("api", ["platform", "features", "client", "cli"]),
  layer("platform", ["api", "features", "client", "cli"])
)
