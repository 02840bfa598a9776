// Proves that TokenClient refreshes before expiry: run against a broker with
//   BROKER_URL=... SESSION_TOKEN=... node examples/web/refresh-demo.mjs
// It asks for 60-second tokens with a 58-second margin, so a refresh is due two seconds
// after each token; it prints one JSON line and exits 0 after REFRESHES refreshes that
// each arrived before the previous token's expiry.
import { TokenClient } from "./token-client.mjs";

const wanted = Number(process.env.REFRESHES || 2);
const seen = [];
const tokens = new TokenClient({
  brokerUrl: process.env.BROKER_URL,
  getSessionToken: async () => process.env.SESSION_TOKEN,
  grants: { sync: {} },
  ttl: 60,
  refreshMarginSeconds: 58,
  onToken: (fresh) => {
    seen.push({ at: Date.now(), expiresAt: Date.parse(fresh.expires_at), token: fresh.token });
    if (seen.length > wanted) finish();
  },
});

function finish() {
  tokens.stop();
  const beforeExpiry = seen.slice(1).every((entry, index) => entry.at < seen[index].expiresAt);
  const distinct = new Set(seen.map((entry) => entry.token)).size === seen.length;
  console.log(JSON.stringify({ refreshes: seen.length - 1, beforeExpiry, distinct }));
  process.exit(beforeExpiry && distinct ? 0 : 1);
}

setTimeout(() => {
  console.log(JSON.stringify({ refreshes: seen.length - 1, error: "timed out" }));
  process.exit(2);
}, 30000);
await tokens.start();
