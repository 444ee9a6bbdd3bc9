-- 0006_chat_threads (down): in reverse order of creation (the indexes go with their tables).
DROP TABLE chat_item_feedback;
DROP TABLE chat_thread_items;
DROP TABLE chat_threads;
