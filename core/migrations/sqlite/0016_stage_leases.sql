-- Processing nodes and the leases of the pipeline stages they run (see core/src/pipeline/lease.rs).
-- Used on PostgreSQL only (one process owns a SQLite file); kept here so both schemas match.
CREATE TABLE pipeline_nodes (
    node TEXT PRIMARY KEY,
    stages TEXT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

CREATE TABLE stage_leases (
    stage TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
