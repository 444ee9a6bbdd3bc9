import { Effect, type Fiber, Layer, Scheduler } from "effect"

/**
 * How long background work holds the event loop at a stretch. A token that arrives meanwhile
 * waits this long at most (plus one statement of PGlite's, a garbage collection, or a callback),
 * not behind every fiber that has work.
 */
export const BACKGROUND_SLICE_MS = 1

/** How many operations a background fiber runs between looks at the clock. */
const OPS_BETWEEN_CLOCK_READS = 16

/**
 * Fibers on this scheduler go on from the event loop's check phase (setImmediate), after the
 * callbacks of the sockets that are ready, for BACKGROUND_SLICE_MS a turn of the loop in all: a
 * fiber yields when the slice is spent and the fibers still waiting go on at the next turn.
 * (Effect's default scheduler goes on in a microtask, 2,048 operations a fiber and every fiber
 * that has work before any socket callback; its batched one, 256 operations of every fiber.)
 */
class BackgroundScheduler implements Scheduler.Scheduler {
  private tasks: Array<Scheduler.Task> = []
  private deadline = 0
  private scheduled = false

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
    this.deadline = performance.now() + BACKGROUND_SLICE_MS
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
 * (BACKGROUND_SLICE_MS), after the sockets that are ready.
 */
export const inBackground = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withScheduler(effect, background)

/**
 * The same for the layers built after it and the fibers they start: the server runs in it as a
 * whole (main.ts, and the tests' TestApp), so that no request's work holds up a token more than a slice.
 */
export const BackgroundScheduling: Layer.Layer<never> = Layer.setScheduler(background)

/**
 * Runs `effect` ahead of the background: on Effect's default scheduler, where a fiber resumed by
 * a socket callback goes on in the microtasks right after it. For the token relay only (a token
 * read from the provider is sent to the client at once), whose work per callback is small.
 */
export const inForeground = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withScheduler(effect, Scheduler.defaultScheduler)
