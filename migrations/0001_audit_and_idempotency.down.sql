-- 0001_audit_and_idempotency (down)
-- Undoes 0001_audit_and_idempotency.up.sql; runs inside one transaction with the removal of its
-- schema_migrations row. Dropping the tables drops their indexes and the audit_logs id sequence.

DROP TABLE idempotency_keys;
DROP TABLE audit_logs;
