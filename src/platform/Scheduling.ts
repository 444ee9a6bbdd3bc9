import { Effect, type Fiber, Layer, Scheduler, type Scope } from "effect"

/**
 * How long background work holds the event loop at a stretch while no answer streams: other
 * requests' callbacks wait this long at most, not behind every fiber that has work.
 */
export const BACKGROUND_SLICE_MS = 1

/**
 * The same while an answer streams: a token that arrives meanwhile waits this long at most (plus
 * a garbage collection or the callbacks ready before its own). Chat bench, 50 streams, interleaved
 * runs: first delta p95 6.0-8.8 ms with 1 ms slices, 4.6-5.2 ms with 0.25 ms; shorter slices
 * cost ~15 % of request throughput (a turn of the event loop per slice), hence only meanwhile.
 */
export const STREAMING_SLICE_MS = 0.25

/** How many operations a background fiber runs between looks at the clock. */
const OPS_BETWEEN_CLOCK_READS = 16

/**
 * Fibers on this scheduler go on from the event loop's check phase (setImmediate), after the
 * callbacks of the sockets that are ready, for one slice a turn of the loop in all
 * (BACKGROUND_SLICE_MS, or STREAMING_SLICE_MS while an answer streams): a fiber yields when the
 * slice is spent and the fibers still waiting go on at the next turn.
 * (Effect's default scheduler goes on in a microtask, 2,048 operations a fiber and every fiber
 * that has work before any socket callback; its batched one, 256 operations of every fiber.)
 */
class BackgroundScheduler implements Scheduler.Scheduler {
  private tasks: Array<Scheduler.Task> = []
  private deadline = 0
  private scheduled = false
  /** answers streaming now (`streaming`) */
  streams = 0

  scheduleTask(task: Scheduler.Task) {
    this.tasks.push(task)
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(this.runSlice)
    }
  }

  shouldYield(fiber: Fiber.RuntimeFiber<unknown, unknown>): number | false {
    return fiber.currentOpCount % OPS_BETWEEN_CLOCK_READS === 0 && performance.now() >= this.deadline ? 0 : false
  }

  private readonly runSlice = () => {
    this.deadline = performance.now() + (this.streams > 0 ? STREAMING_SLICE_MS : BACKGROUND_SLICE_MS)
    let ran = 0
    // a task scheduled during the slice (a fiber that yielded) may run in it if time is left
    do this.tasks[ran++]!()
    while (ran < this.tasks.length && performance.now() < this.deadline)
    this.tasks = this.tasks.slice(ran)
    if (this.tasks.length > 0) setImmediate(this.runSlice)
    else this.scheduled = false
  }
}

const background = new BackgroundScheduler()

/**
 * Runs `effect`, and the fibers it forks, in the background: in slices of the event loop's turns
 * (BACKGROUND_SLICE_MS, or STREAMING_SLICE_MS), after the sockets that are ready.
 */
export const inBackground = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withScheduler(effect, background)

/**
 * The same for the layers built after it and the fibers they start: the server runs in it as a
 * whole (main.ts, and the tests' TestApp), so that no request's work holds up a token more than a slice.
 */
export const BackgroundScheduling: Layer.Layer<never> = Layer.setScheduler(background)

/**
 * An answer streams for the scope (its response's): meanwhile background work holds the event
 * loop STREAMING_SLICE_MS at a stretch, not BACKGROUND_SLICE_MS.
 */
export const streaming: Effect.Effect<void, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => {
    background.streams++
  }),
  () =>
    Effect.sync(() => {
      background.streams--
    })
)

/**
 * Runs `effect` ahead of the background: on Effect's default scheduler, where a fiber resumed by
 * a socket callback goes on in the microtasks right after it. For calls to providers only (a
 * model's answer, whose tokens are sent to the client as they are read), whose work per callback is small.
 */
export const inForeground = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withScheduler(effect, Scheduler.defaultScheduler)
