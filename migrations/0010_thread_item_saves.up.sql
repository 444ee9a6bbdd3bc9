-- 0010_thread_item_saves (up): when an item was last written. An answer streaming is saved at least
-- every few seconds by its writer (AnswerWriter), so one left `in_progress` and untouched for longer
-- was cut by an instance that died mid-stream, and is settled by the sweep of any instance
-- (ThreadsRepo.settleAbandonedAnswers), never one still streaming elsewhere.
ALTER TABLE chat_thread_items ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- the sweep reads only the answers in progress, oldest save first
CREATE INDEX chat_thread_items_in_progress_idx ON chat_thread_items (updated_at)
  WHERE payload->>'status' = 'in_progress';
