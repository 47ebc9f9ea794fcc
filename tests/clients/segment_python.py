"""Sends the seed-000 story with Segment's own segment-analytics-python, unchanged, to a Touchpoint core.

Usage: python segment_python.py HOST WRITE_KEY USER_ID
"""
import sys

import segment.analytics as analytics

host, write_key, user_id = sys.argv[1:4]
errors = []
analytics.write_key = write_key
analytics.host = host
analytics.sync_mode = True
analytics.on_error = lambda error, items: errors.append(error)

analytics.identify(user_id, {"email": f"{user_id}@example.com", "plan_tier": "free", "user_role": "member"})
analytics.track(user_id, "workspace_created", {"workspace_id": f"ws-{user_id}", "workspace_name": "Py Co"})
analytics.track(user_id, "teammate_invited", {"workspace_id": f"ws-{user_id}", "invitee_role": "viewer"})
analytics.page(user_id, name="Pricing", properties={"path": "/pricing", "url": "https://example.com/pricing", "title": "Pricing"})
analytics.group(user_id, f"ws-{user_id}", {"seats_provisioned": 4})
analytics.flush()
sys.exit(1 if errors else 0)
