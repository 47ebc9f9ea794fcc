"""Reads a Touchpoint Parquet warehouse with DuckDB and prints what the integration test checks,
as one JSON object: rows per table, typed columns, identities stitched to canonical profiles,
event counts per profile, and PQLs per week by first-touch UTM source.

Usage: duckdb_report.py WAREHOUSE_DIR [AUDIENCE_KEY]
"""

import glob
import json
import os
import sys

import duckdb

root = sys.argv[1]
audience = sys.argv[2] if len(sys.argv) > 2 else "product_qualified_lead"
con = duckdb.connect()


def rel(pattern):
    """A view over the Parquet files matching `pattern` (None if there are none)."""
    files = glob.glob(os.path.join(root, pattern))
    if not files:
        return None
    return (
        "read_parquet(%s, hive_partitioning = true, union_by_name = true)"
        % json.dumps(os.path.join(root, pattern)).replace('"', "'")
    )


def rows(sql):
    return [list(r) for r in con.execute(sql).fetchall()]


events = rel("events/*/*/*.parquet")
pages = rel("pages/*/*.parquet")
identifies = rel("identifies/*/*.parquet")
groups = rel("groups/*/*.parquet")
mapping = rel("external_id_mapping_updates/*/*.parquet")
graph = rel("id_graph_updates/*/*.parquet")
audiences = rel("audiences/*/*/*.parquet")

# A profile's canonical profile: the latest id_graph_updates row for it, else itself.
if graph:
    con.execute(
        f"CREATE VIEW canonical AS SELECT profile_id, arg_max(canonical_profile_id, touchpoint_seq) "
        f"AS canonical_profile_id FROM {graph} GROUP BY profile_id"
    )
else:
    con.execute("CREATE VIEW canonical AS SELECT NULL::VARCHAR AS profile_id, NULL::VARCHAR AS canonical_profile_id WHERE false")

out = {"tables": {}, "types": {}}
for name, r in [("events", events), ("pages", pages), ("identifies", identifies), ("groups", groups),
                ("external_id_mapping_updates", mapping), ("id_graph_updates", graph), ("audiences", audiences)]:
    if r:
        total, distinct = con.execute(
            f"SELECT count(*), count(DISTINCT coalesce(CAST(id AS VARCHAR), '')) FROM {r}"
            if name not in ("external_id_mapping_updates", "id_graph_updates")
            else f"SELECT count(*), count(*) FROM {r}"
        ).fetchone()
        out["tables"][name] = {"rows": total, "distinct_ids": distinct}

if events:
    out["types"] = {
        r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {events}").fetchall()
    }
    # Track events per canonical profile.
    out["events_per_profile"] = rows(
        f"SELECT coalesce(c.canonical_profile_id, e.touchpoint_profile_id) AS profile, e.event, count(*) "
        f"FROM {events} e LEFT JOIN canonical c ON c.profile_id = e.touchpoint_profile_id "
        f"GROUP BY 1, 2 ORDER BY 1, 2"
    )
    out["trial_started"] = rows(
        f"SELECT user_id, plan_tier, trial_days, typeof(trial_days), typeof(\"timestamp\") "
        f"FROM {events} WHERE event = 'trial_started' ORDER BY user_id"
    )
    cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {events}").fetchall()]
    if "coupon_code" in cols:
        out["coupon_codes"] = rows(
            f"SELECT touchpoint_seq, coupon_code FROM {events} WHERE event = 'trial_started' ORDER BY touchpoint_seq"
        )

if pages:
    out["pages_per_profile"] = rows(
        f"SELECT coalesce(c.canonical_profile_id, p.touchpoint_profile_id), count(*) FROM {pages} p "
        f"LEFT JOIN canonical c ON c.profile_id = p.touchpoint_profile_id GROUP BY 1 ORDER BY 1"
    )

if mapping:
    # Identifier -> profile as attached, resolved through later merges.
    out["identities"] = rows(
        f"SELECT DISTINCT m.external_id_type, m.external_id_value, "
        f"coalesce(c.canonical_profile_id, m.profile_id) FROM {mapping} m "
        f"LEFT JOIN canonical c ON c.profile_id = m.profile_id ORDER BY 1, 2"
    )

if pages and audiences and mapping:
    # First touch: the profile's earliest page view, stitched through the anonymous id; its UTM
    # source, or (direct). PQLs: first entry into the audience, per canonical profile.
    out["pql_weekly"] = rows(
        f"""
        WITH ids AS (
            SELECT DISTINCT m.external_id_type, m.external_id_value,
                   coalesce(c.canonical_profile_id, m.profile_id) AS profile_id
            FROM {mapping} m LEFT JOIN canonical c ON c.profile_id = m.profile_id
        ),
        touches AS (
            SELECT i.profile_id, p."timestamp", p.context_campaign_source AS source
            FROM {pages} p JOIN ids i
              ON (i.external_id_type = 'anonymous_id' AND i.external_id_value = p.anonymous_id)
              OR (p.anonymous_id IS NULL AND i.external_id_type = 'user_id' AND i.external_id_value = p.user_id)
        ),
        first_touch AS (
            SELECT profile_id, coalesce(arg_min(source, "timestamp"), '(direct)') AS source
            FROM (SELECT profile_id, "timestamp", coalesce(source, '(direct)') AS source FROM touches)
            GROUP BY profile_id
        ),
        pqls AS (
            SELECT coalesce(c.canonical_profile_id, a.touchpoint_profile_id) AS profile_id,
                   min(a."timestamp") AS entered_at
            FROM {audiences} a LEFT JOIN canonical c ON c.profile_id = a.touchpoint_profile_id
            WHERE a.event = 'audience_entered' AND a.audience_key = '{audience}'
            GROUP BY 1
        )
        SELECT strftime(date_trunc('week', entered_at AT TIME ZONE 'UTC'), '%Y-%m-%d') AS week,
               coalesce(f.source, '(none)') AS utm_source, count(*) AS pqls
        FROM pqls p LEFT JOIN first_touch f USING (profile_id)
        GROUP BY 1, 2 ORDER BY 1, 2
        """
    )

print(json.dumps(out, default=str))
