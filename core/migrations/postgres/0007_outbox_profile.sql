-- Which profile an outbox row is about, so erasing a profile also cancels its undelivered rows.
ALTER TABLE outbox ADD COLUMN profile_id TEXT;
CREATE INDEX outbox_profile ON outbox (profile_id);
