-- Property aggregates (computed traits): per profile, event and numeric property, the count, sum,
-- minimum and maximum of the values seen.
CREATE TABLE profile_aggregates (
    profile_id  TEXT NOT NULL,
    event       TEXT NOT NULL,
    property    TEXT NOT NULL,
    n           BIGINT NOT NULL,
    total       DOUBLE PRECISION NOT NULL,
    min_value   DOUBLE PRECISION NOT NULL,
    max_value   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (profile_id, event, property)
);
