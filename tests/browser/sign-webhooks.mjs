// Signs webhook payloads with the providers' official libraries, for the webhook integration tests:
// Stripe's `stripe` package (`stripe.webhooks.generateTestHeaderString`) and Svix's `svix` package
// (`new Webhook(secret).sign`, what Resend's webhooks use).
//
// Usage: node tests/browser/sign-webhooks.mjs <requests.json>
// where requests.json is [{"kind": "stripe", "payload": "...", "secret": "whsec_...", "timestamp": 1700000000?},
//                         {"kind": "svix", "payload": "...", "secret": "whsec_...", "id": "msg_...", "timestamp": 1700000000}]
// Prints a JSON array with the header value for each request: Stripe-Signature, or svix-signature.
// Each signature is checked with the same library's verifier before it is printed.
import { readFileSync } from "node:fs";
import Stripe from "stripe";
import { Webhook } from "svix";

const requests = JSON.parse(readFileSync(process.argv[2], "utf8"));
const stripe = new Stripe("sk_test_touchpoint_offline"); // never calls the API
const out = [];
for (const r of requests) {
  if (r.kind === "stripe") {
    const header = stripe.webhooks.generateTestHeaderString({
      payload: r.payload,
      secret: r.secret,
      ...(r.timestamp ? { timestamp: r.timestamp } : {}),
    });
    // Stripe's own check, with no tolerance so old test timestamps pass too.
    stripe.webhooks.constructEvent(r.payload, header, r.secret, Number.MAX_SAFE_INTEGER);
    out.push(header);
  } else if (r.kind === "svix") {
    const wh = new Webhook(r.secret);
    const signature = wh.sign(r.id, new Date(r.timestamp * 1000), r.payload);
    if (Math.abs(Date.now() / 1000 - r.timestamp) < 300) {
      wh.verify(r.payload, { "svix-id": r.id, "svix-timestamp": String(r.timestamp), "svix-signature": signature });
    }
    out.push(signature);
  } else {
    throw new Error(`unknown kind ${r.kind}`);
  }
}
process.stdout.write(JSON.stringify(out));
