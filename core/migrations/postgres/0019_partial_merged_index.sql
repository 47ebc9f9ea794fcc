-- Only merged-away profiles are indexed by what they merged into. A full index made the planner,
-- which has no statistics on a fresh database, answer "live profiles among these 500 ids" by walking
-- every live profile through `merged_into IS NULL` instead of looking the ids up: the audience
-- stage's window grew with the number of profiles (67 ms at 20k, 240 ms at 250k). Lookups by
-- `merged_into = ?` imply `merged_into IS NOT NULL`, so they still use this index. Building it
-- reads the whole table and holds off writes to `profiles` meanwhile (seconds per million rows).
DROP INDEX IF EXISTS profiles_merged_into;
CREATE INDEX profiles_merged_into ON profiles (merged_into) WHERE merged_into IS NOT NULL;
