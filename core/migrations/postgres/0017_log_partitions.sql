-- The partitioned log (PostgreSQL only; the SQLite log has one writer and one partition, so its
-- `seq` is already its commit order).
--
-- Each message belongs to one partition, chosen by a stable key (storage::partition), and has a
-- gap-free offset within it. An append locks only the rows of the partitions it writes, so appends
-- to different partitions commit concurrently; there is no global lock. `seq` stays the row's id
-- and the order the stages read in, made safe by log_horizon() below.
CREATE TABLE log_partitions (
    partition    INT PRIMARY KEY CHECK (partition >= 0),
    next_offset  BIGINT NOT NULL CHECK (next_offset >= 1)
);

-- A database from before the partitions: one partition holding every row, in log order.
ALTER TABLE messages ADD COLUMN partition INT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN part_offset BIGINT;
UPDATE messages m SET part_offset = r.n
  FROM (SELECT seq, row_number() OVER (ORDER BY seq) AS n FROM messages) r
 WHERE m.seq = r.seq;
ALTER TABLE messages ALTER COLUMN part_offset SET NOT NULL;
CREATE UNIQUE INDEX messages_partition_offset ON messages (partition, part_offset);
INSERT INTO log_partitions (partition, next_offset)
SELECT 0, COUNT(*) + 1 FROM messages;

-- Every append marks each partition it writes with a shared advisory lock (key 7243002, the
-- partition), taken before it draws a position and kept until it ends; log_horizon() below waits
-- for those marks (see storage::BeginRead::log_horizon).
--
-- A row inserted without an offset (a quarantined message replayed) takes one here, marked and
-- under its partition's lock like any append. Its position is drawn again after that, so that the
-- log horizon never passes a position whose transaction is still open.
CREATE FUNCTION messages_take_offset() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(7243002, NEW.partition);
    UPDATE log_partitions SET next_offset = next_offset + 1
     WHERE partition = NEW.partition
    RETURNING next_offset - 1 INTO NEW.part_offset;
    IF NEW.part_offset IS NULL THEN
        RAISE EXCEPTION 'log partition % does not exist', NEW.partition;
    END IF;
    NEW.seq := nextval(pg_get_serial_sequence('messages', 'seq'));
    RETURN NEW;
END $$;
CREATE TRIGGER messages_take_offset BEFORE INSERT ON messages FOR EACH ROW
    WHEN (NEW.part_offset IS NULL) EXECUTE FUNCTION messages_take_offset();

-- The highest position below which every append has ended, in one round trip: the last position
-- drawn, read first, then each partition's marks waited for in turn, holding nothing meanwhile.
CREATE FUNCTION log_horizon() RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    last BIGINT;
    p INT;
BEGIN
    SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END
      INTO last FROM messages_seq_seq;
    FOR p IN SELECT partition FROM log_partitions ORDER BY partition LOOP
        -- Granted once every append writing partition p has ended; let go at once.
        PERFORM pg_advisory_lock(7243002, p);
        PERFORM pg_advisory_unlock(7243002, p);
    END LOOP;
    RETURN last;
EXCEPTION WHEN OTHERS OR query_canceled THEN
    -- Never leave a session lock behind on a pooled connection.
    IF p IS NOT NULL THEN
        PERFORM pg_advisory_unlock(7243002, p);
    END IF;
    RAISE;
END $$;

-- How the log was laid out when the database was created, written once by the first node to
-- start: every node then routes and processes the same way.
CREATE TABLE log_layout (
    id                      INT PRIMARY KEY CHECK (id = 1),
    partitions              INT NOT NULL CHECK (partitions >= 1),
    profiles_per_partition  BOOLEAN NOT NULL
);
