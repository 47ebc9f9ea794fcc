-- One index over messageIds instead of two. SDKs (Segment's among them) send random UUIDv4
-- messageIds, so every index keyed by them costs each message a page of its own in the commit's
-- WAL frames and again in the checkpoint; the unique dedup index and the lookup index together
-- cut `/v1/track` on such ids to 0.7x of one index (BENCHMARKS.md, "Random messageIds").
-- Deduplication inside the window now probes this index before the insert, in the log writer's
-- transaction under the log gate (core/src/storage/sqlite_log_writer.rs, `fresh`); lookups by
-- messageId use its first column. `dedup_key` still marks a row as inside the window.
DROP INDEX messages_dedup;
DROP INDEX messages_message_id;
CREATE INDEX messages_message_id ON messages (message_id, source_id);
