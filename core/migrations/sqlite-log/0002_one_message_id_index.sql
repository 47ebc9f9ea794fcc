-- One index over messageIds instead of two. SDKs (Segment's among them) send random UUIDv4
-- messageIds, so every index keyed by them costs each message a page of its own in the commit's
-- WAL frames and again in the checkpoint; with both the unique dedup index and the lookup index,
-- `/v1/track` on such ids ran at 0.8x of this layout (BENCHMARKS.md, "Random messageIds").
-- Deduplication inside the window now probes this index before the insert, in the log writer's
-- transaction under the log gate (core/src/storage/sqlite_log_writer.rs, `fresh`); lookups by
-- messageId use its first column. `dedup_key` still marks a row as inside the window.
-- The debugger's recent messages of a source read (source_id, seq), which the dropped unique
-- index used to lead with; it fills in append order, so it costs no random page.
-- On an existing log this is one pass over the messages at the first start after the upgrade.
DROP INDEX IF EXISTS messages_dedup;
DROP INDEX IF EXISTS messages_message_id;
CREATE INDEX messages_message_id ON messages (message_id, source_id);
CREATE INDEX messages_source_seq ON messages (source_id, seq);
