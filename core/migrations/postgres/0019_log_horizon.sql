-- The log horizon in one round trip. Appends mark each partition they write with a shared advisory
-- lock (key 7243002, the partition) taken before they draw a position and kept until they end;
-- log_horizon() reads the last position drawn, then waits for each partition's marks in turn,
-- holding nothing while it waits (see storage::BeginRead::log_horizon).
CREATE OR REPLACE FUNCTION messages_take_offset() RETURNS trigger LANGUAGE plpgsql AS $$
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
