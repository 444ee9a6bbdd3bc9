-- 0010_thread_item_saves (down)
DROP INDEX chat_thread_items_in_progress_idx;
ALTER TABLE chat_thread_items DROP COLUMN updated_at;
