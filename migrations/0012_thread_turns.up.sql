-- 0012_thread_turns (up): one turn at a time per thread. A turn (a user message and the answer it
-- starts, or a retry) holds a lease on its thread: `turn_id` names it, `turn_until` is renewed
-- while it runs and cleared when it ends (ThreadsRepo.acquireTurn/renewTurn/releaseTurn), so a
-- second message sent meanwhile, from any instance, is refused instead of interleaving two answers
-- and racing on the runtime state; an instance that dies mid-turn holds it until `turn_until`.
ALTER TABLE chat_threads ADD COLUMN turn_id text NULL;
ALTER TABLE chat_threads ADD COLUMN turn_until timestamptz NULL;
