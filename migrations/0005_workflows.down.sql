-- 0005_workflows (down): the tables reference each other (active version), so they go together.
DROP TABLE workflow_shares, workflow_transitions, workflow_steps, workflow_definitions, workflows;
