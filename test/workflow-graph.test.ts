import { layer } from "@effect/vitest"
import { Effect } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"

import { type GraphEdgeInput, type GraphNodeInput, NODE_KINDS, normalizeGraph } from "../src/domain/Workflow.js"
import { MAX_EDGES, MAX_NODES, validateGraph } from "../src/features/workflows/Graph.js"
import { TestApp } from "./support/app.js"
import { raw, session } from "./support/session.js"

const graph = (nodes: ReadonlyArray<GraphNodeInput>, edges: ReadonlyArray<GraphEdgeInput> = []) =>
  normalizeGraph({ nodes, edges })

const paths = (g: ReturnType<typeof graph>) => validateGraph(g).map((issue) => issue.path)

const linear = graph(
  [{ slug: "start", kind: "start" }, { slug: "agent", kind: "agent" }, { slug: "end", kind: "end" }],
  [{ source: "start", target: "agent" }, { source: "agent", target: "end" }]
)

describe("validateGraph", () => {
  it("accepts start → agent → end and a condition with labelled branches", () => {
    expect(validateGraph(linear)).toEqual([])
    const branching = graph(
      [
        { slug: "start", kind: "start" },
        { slug: "check", kind: "condition", parameters: { expression: "state.x > 1" } },
        { slug: "yes", kind: "assistant_message" },
        { slug: "no", kind: "state" },
        { slug: "wait", kind: "wait_for_user_input" },
        { slug: "end", kind: "end" },
        { slug: "unused", kind: "agent", is_enabled: false }
      ],
      [
        { source: "start", target: "check" },
        { source: "check", target: "yes", condition: "true" },
        { source: "check", target: "no", condition: null },
        { source: "yes", target: "wait" },
        { source: "wait", target: "end" },
        { source: "no", target: "end" }
      ]
    )
    expect(validateGraph(branching)).toEqual([])
  })

  // one row per rule: the graph, and the paths of the problems it must report
  const table: ReadonlyArray<readonly [string, ReturnType<typeof graph>, ReadonlyArray<string>]> = [
    ["no start (reachability is then not checked)", graph([{ slug: "end", kind: "end" }]), ["nodes"]],
    [
      "two starts",
      graph([{ slug: "a", kind: "start" }, { slug: "b", kind: "start" }, { slug: "end", kind: "end" }], [
        { source: "a", target: "end" },
        { source: "b", target: "end" }
      ]),
      ["nodes[1].kind", "nodes[1]"]
    ],
    [
      "a disabled second start is fine",
      graph([{ slug: "a", kind: "start" }, { slug: "b", kind: "start", is_enabled: false }]),
      []
    ],
    [
      "duplicate slug",
      graph([{ slug: "start", kind: "start" }, { slug: "start", kind: "end" }], [{ source: "start", target: "start" }]),
      ["nodes[1].slug", "edges[0].target"]
    ],
    [
      "dangling edge",
      graph([{ slug: "start", kind: "start" }], [{ source: "start", target: "ghost" }, {
        source: "nope",
        target: "start"
      }]),
      ["edges[0].target", "edges[1].source", "edges[1].target"]
    ],
    [
      "edge into start, edge out of end",
      graph([{ slug: "start", kind: "start" }, { slug: "end", kind: "end" }], [
        { source: "start", target: "end" },
        { source: "end", target: "start" }
      ]),
      ["edges[1].target", "edges[1].source"]
    ],
    [
      "unreachable node",
      graph([{ slug: "start", kind: "start" }, { slug: "island", kind: "agent" }, { slug: "end", kind: "end" }], [
        { source: "start", target: "end" }
      ]),
      ["nodes[1]"]
    ],
    [
      "condition on an edge out of a non-condition node",
      graph([{ slug: "start", kind: "start" }, { slug: "end", kind: "end" }], [
        { source: "start", target: "end", condition: "true" }
      ]),
      ["edges[0].condition"]
    ],
    [
      "unknown kind",
      graph([{ slug: "start", kind: "start" }, { slug: "w", kind: "widget" }], [{ source: "start", target: "w" }]),
      ["nodes[1].kind"]
    ],
    [
      "parent cycle and unknown parent",
      graph(
        [
          { slug: "start", kind: "start" },
          { slug: "a", kind: "agent", parent_slug: "b" },
          { slug: "b", kind: "agent", parent_slug: "c" },
          { slug: "c", kind: "agent", parent_slug: "a" },
          { slug: "d", kind: "agent", parent_slug: "d" },
          { slug: "e", kind: "agent", parent_slug: "ghost" },
          { slug: "f", kind: "agent", parent_slug: "a" }
        ],
        ["a", "b", "c", "d", "e", "f"].map((slug) => ({ source: "start", target: slug }))
      ),
      ["nodes[5].parent_slug", "nodes[1].parent_slug", "nodes[4].parent_slug"]
    ]
  ]

  it.each(table)("%s", (_, g, expected) => {
    expect([...paths(g)].sort()).toEqual([...expected].sort())
  })

  it("lists the supported kinds for an unknown kind, and every problem of a bad graph at once", () => {
    const bad = graph(
      [
        { slug: "s1", kind: "start" },
        { slug: "s2", kind: "start" },
        { slug: "x", kind: "widget" },
        { slug: "lost", kind: "agent" },
        { slug: "p", kind: "agent", parent_slug: "p" }
      ],
      [{ source: "s1", target: "x" }, { source: "s1", target: "ghost" }, { source: "s1", target: "p" }]
    )
    const issues = validateGraph(bad)
    const kind = issues.find((issue) => issue.path === "nodes[2].kind")
    expect(kind?.message).toContain(NODE_KINDS.join(", "))
    expect(issues.map((issue) => issue.path).sort()).toEqual(
      ["nodes[1].kind", "nodes[1]", "nodes[2].kind", "edges[1].target", "nodes[3]", "nodes[4].parent_slug"].sort()
    )
  })

  it("caps the size of a graph before any other check", () => {
    const big = graph(Array.from({ length: MAX_NODES + 1 }, (_, i) => ({ slug: `n${i}`, kind: "agent" })))
    expect(validateGraph(big)).toEqual([{ path: "nodes", message: expect.stringContaining(String(MAX_NODES)) }])
    const edges = graph(
      [{ slug: "start", kind: "start" }],
      Array.from({ length: MAX_EDGES + 1 }, () => ({ source: "start", target: "start" }))
    )
    expect(paths(edges)).toEqual(["edges"])
  })

  it("accepts any chain of steps between one start and one end (property)", () => {
    const middleKinds = fc.constantFrom("agent", "assistant_message", "state", "wait_for_user_input")
    fc.assert(
      fc.property(fc.array(middleKinds, { maxLength: 30 }), fc.boolean(), (kinds, withParents) => {
        const slugs = ["start", ...kinds.map((_, i) => `step-${i}`), "end"]
        const nodes = slugs.map((slug, i) => ({
          slug,
          kind: i === 0 ? "start" : i === slugs.length - 1 ? "end" : kinds[i - 1] ?? "agent",
          // a tree of parents (always pointing backwards) never loops
          parent_slug: withParents && i > 1 ? slugs[i - 1] ?? null : null
        }))
        const edges = slugs.slice(1).map((slug, i) => ({ source: slugs[i] ?? "", target: slug }))
        expect(validateGraph(graph(nodes, edges))).toEqual([])
      })
    )
  })

  it("checks every expression and template the runtime reads, naming its path", () => {
    const g = graph(
      [
        { slug: "start", kind: "start" },
        { slug: "check", kind: "condition", parameters: { expression: "state.x >" } },
        { slug: "agent", kind: "agent", parameters: { instructions: "Hi {{ state.name" } },
        { slug: "say", kind: "assistant_message", parameters: { text: "{{ process.env }}" } },
        {
          slug: "set",
          kind: "state",
          parameters: {
            assignments: { "state.ok": "input.user_message", "input.x": "1", "state.y": "state.__proto__" }
          }
        },
        { slug: "set2", kind: "state", parameters: { assignments: ["state.x"] } },
        { slug: "off", kind: "agent", is_enabled: false, parameters: { instructions: 3 } },
        { slug: "end", kind: "end" }
      ],
      [
        { source: "start", target: "check" },
        { source: "check", target: "agent", condition: "\"approved\"" },
        { source: "check", target: "say", condition: "state.__proto__ == 1" },
        { source: "check", target: "set", condition: "yes" },
        { source: "check", target: "set2", condition: null },
        { source: "agent", target: "end" },
        { source: "say", target: "end" },
        { source: "set", target: "end" },
        { source: "set2", target: "end" }
      ]
    )
    const issues = validateGraph(g)
    expect(issues.map((issue) => issue.path).sort()).toEqual(
      [
        "edges[2].condition",
        "edges[3].condition",
        "nodes[1].parameters.expression",
        "nodes[2].parameters.instructions",
        "nodes[3].parameters.text",
        "nodes[4].parameters.assignments[\"input.x\"]",
        "nodes[4].parameters.assignments[\"state.y\"]",
        "nodes[5].parameters.assignments",
        "nodes[6].parameters.instructions"
      ].sort()
    )
    const message = (path: string) => issues.find((issue) => issue.path === path)?.message
    expect(message("edges[2].condition")).toBe("the property \"__proto__\" is not allowed at position 6")
    expect(message("edges[3].condition")).toContain("unknown name \"yes\"")
    expect(message("nodes[1].parameters.expression")).toContain("unexpected end of expression")
    expect(message("nodes[2].parameters.instructions")).toContain("unclosed \"{{\"")
    expect(message("nodes[3].parameters.text")).toContain("expressions read only input.* and state.*")
    expect(message("nodes[4].parameters.assignments[\"input.x\"]")).toContain("target:")
    expect(message("nodes[6].parameters.instructions")).toBe("must be a string (a template)")
    // a long or unusual key is not echoed in the path
    const odd = graph([{ slug: "start", kind: "start" }, {
      slug: "s",
      kind: "state",
      parameters: { assignments: { ["k".repeat(100)]: "1" } }
    }], [{ source: "start", target: "s" }])
    expect(paths(odd)).toEqual(["nodes[1].parameters.assignments[(key)]"])
  })

  it("accepts plain text and valid templates, conditions and assignments", () => {
    const g = graph(
      [
        { slug: "start", kind: "start" },
        { slug: "check", kind: "condition", parameters: { expression: "\"help\" in input.user_message" } },
        { slug: "agent", kind: "agent", parameters: { instructions: "You are a helpful assistant." } },
        { slug: "say", kind: "assistant_message", parameters: { text: "Hello {{ state.name }}, {{ state.n > 1 }}" } },
        {
          slug: "set",
          kind: "state",
          parameters: { assignments: { "state.seen": "true", "state.a[\"b\"]": "[1, \"a\"]" } }
        },
        { slug: "end", kind: "end" }
      ],
      [
        { source: "start", target: "check" },
        { source: "check", target: "agent", condition: "true" },
        { source: "check", target: "say", condition: "false" },
        { source: "check", target: "set", condition: null },
        { source: "agent", target: "end" },
        { source: "say", target: "end" },
        { source: "set", target: "end" }
      ]
    )
    expect(validateGraph(g)).toEqual([])
  })

  it("never throws and only reports paths into the graph (property)", () => {
    const slug = fc.constantFrom("a", "b", "c", "d", "start", "end")
    const node = fc.record({
      slug,
      kind: fc.constantFrom(...NODE_KINDS, "widget"),
      parent_slug: fc.option(slug, { nil: null }),
      is_enabled: fc.boolean()
    })
    const edge = fc.record({
      source: slug,
      target: slug,
      condition: fc.option(fc.constantFrom("true", "x"), { nil: null })
    })
    fc.assert(
      fc.property(fc.array(node, { maxLength: 8 }), fc.array(edge, { maxLength: 12 }), (nodes, edges) => {
        const issues = validateGraph(graph(nodes, edges))
        for (const issue of issues) {
          const match = /^(nodes|edges)(?:\[(\d+)\])?/.exec(issue.path)
          expect(match).not.toBeNull()
          const index = match?.[2] === undefined ? undefined : Number(match[2])
          if (index !== undefined) expect(index).toBeLessThan(match?.[1] === "nodes" ? nodes.length : edges.length)
        }
        // a graph without problems has exactly one enabled start
        if (issues.length === 0) expect(nodes.filter((n) => n.kind === "start" && n.is_enabled)).toHaveLength(1)
      })
    )
  })
})

layer(TestApp("workflow-graph"), { timeout: 120_000 })("expressions through the API", (it) => {
  it.effect("a condition reaching for __proto__ is a 400 naming the edge's condition", () =>
    Effect.gen(function*() {
      const { token } = yield* session("expression-owner")
      const graph = {
        nodes: [
          { slug: "start", kind: "start" },
          { slug: "check", kind: "condition", parameters: { expression: "state.x" } },
          { slug: "end", kind: "end" }
        ],
        edges: [
          { source: "start", target: "check" },
          { source: "check", target: "end", condition: "state.__proto__ == 1" }
        ]
      }
      const answer = yield* raw("POST", "/api/v1/workflows", {
        token,
        body: { slug: "proto-condition", display_name: "Proto", graph }
      })
      expect(answer.status).toBe(400)
      const errors = answer.body.errors as ReadonlyArray<{ readonly path: string; readonly message: string }>
      expect(errors).toHaveLength(1)
      expect(errors[0]?.path).toMatch(/^(graph\.)?edges\[1\]\.condition$/)
      expect(errors[0]?.message).toBe("the property \"__proto__\" is not allowed at position 6")

      // the same graph with a plain condition is saved
      const ok = yield* raw("POST", "/api/v1/workflows", {
        token,
        body: {
          slug: "plain-condition",
          display_name: "Plain",
          graph: { ...graph, edges: [graph.edges[0], { source: "check", target: "end", condition: "state.x == 1" }] }
        }
      })
      expect(ok.status).toBe(201)
    }))
})
