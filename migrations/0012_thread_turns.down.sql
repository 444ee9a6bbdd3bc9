-- 0012_thread_turns (down)
ALTER TABLE chat_threads DROP COLUMN turn_until;
ALTER TABLE chat_threads DROP COLUMN turn_id;
