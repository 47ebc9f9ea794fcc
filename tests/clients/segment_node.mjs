// Sends the seed-000 story with Segment's own @segment/analytics-node, unchanged, to a Touchpoint core.
// Usage: node segment_node.mjs HOST WRITE_KEY USER_ID
import { Analytics } from '@segment/analytics-node';

const [host, writeKey, userId] = process.argv.slice(2);
const analytics = new Analytics({ writeKey, host, maxEventsInBatch: 3, flushInterval: 200, maxRetries: 3 });
let failed = false;
analytics.on('error', (err) => { failed = true; console.error('delivery error', err?.code ?? err); });

analytics.identify({ userId, anonymousId: `anon-${userId}`, traits: { email: `${userId}@example.com`, plan_tier: 'pro', user_role: 'admin' } });
analytics.track({ userId, event: 'workspace_created', properties: { workspace_id: `ws-${userId}`, workspace_name: 'Node Co' } });
analytics.track({ userId, event: 'teammate_invited', properties: { workspace_id: `ws-${userId}`, invitee_role: 'member' } });
analytics.page({ userId, name: 'Pricing', properties: { path: '/pricing', url: 'https://example.com/pricing', title: 'Pricing' } });
analytics.group({ userId, groupId: `ws-${userId}`, traits: { seats_provisioned: 5 } });
await analytics.closeAndFlush({ timeout: 15000 });
process.exit(failed ? 1 : 0);
