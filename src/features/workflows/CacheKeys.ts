/**
 * What the workflows feature caches: the default workflow with its active version (GET
 * /workflows/current) and which they are (a new thread's), and each workflow's active version.
 * Every write that changes one invalidates it after its commit.
 */
export const CURRENT_KEY = "workflows:current"
/** Under CURRENT_KEY, so that every invalidation of the default workflow covers it. */
export const DEFAULT_TARGET_KEY = `${CURRENT_KEY}:target`
export const activeKey = (workflowId: number) => `workflows:active:${workflowId}`
