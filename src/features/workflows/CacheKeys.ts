/**
 * What the workflows feature caches: the default workflow with its active version (GET
 * /workflows/current), and each workflow's active version. Every write that changes one
 * invalidates it after its commit.
 */
export const CURRENT_KEY = "workflows:current"
export const activeKey = (workflowId: number) => `workflows:active:${workflowId}`
