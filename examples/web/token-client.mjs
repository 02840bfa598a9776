// TokenClient: gets a Twilio Access Token from Token Broker and refreshes it before it
// expires, so that a call or conversation never meets Twilio error 20104 (expired).
//
// Works in browsers and in Node 18+ (global fetch). The broker decides what the token
// may do; the app only says which grants it wants.
//
//   const tokens = new TokenClient({
//     brokerUrl: "https://broker.example.com",
//     getSessionToken: async () => (await auth0.getTokenSilently()), // your IdP's token
//     grants: { voice: {}, chat: {} },
//     // Only where the broker's policy requires app attestation for these grants
//     // (Firebase App Check; "firebase/app-check"): a limited-use token for rules with
//     // attestation = "limited_use", else getToken(appCheck).
//     getAppCheckToken: async () => (await getLimitedUseToken(appCheck)).token,
//   });
//   const first = await tokens.start();
//   const device = new Twilio.Device(first.token);      // @twilio/voice-sdk
//   wireVoiceDevice(device, tokens);
//   const conversations = new Client(first.token);       // @twilio/conversations
//   wireConversationsClient(conversations, tokens);

export class TokenClient {
  constructor({
    brokerUrl,
    getSessionToken,
    getAppCheckToken,
    grants,
    ttl,
    refreshMarginSeconds = 60,
    onToken,
  }) {
    this.brokerUrl = brokerUrl.replace(/\/$/, "");
    this.getSessionToken = getSessionToken;
    this.getAppCheckToken = getAppCheckToken;
    this.grants = grants;
    this.ttl = ttl;
    this.refreshMarginSeconds = refreshMarginSeconds;
    this.listeners = onToken ? [onToken] : [];
    this.timer = null;
    this.current = null;
  }

  // Fetch a token now and keep one fresh from then on.
  async start() {
    return this.refresh();
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
  }

  onToken(listener) {
    this.listeners.push(listener);
  }

  // Fetch a new token (also what the SDK hooks below call), and schedule the next one
  // `refreshMarginSeconds` before this one expires.
  async refresh() {
    const body = { grants: this.grants };
    if (this.ttl) body.ttl = this.ttl;
    const headers = {
      Authorization: `Bearer ${await this.getSessionToken()}`,
      "Content-Type": "application/json",
    };
    // The App Check token goes in its own header, beside the caller's token.
    if (this.getAppCheckToken) headers["X-Firebase-AppCheck"] = await this.getAppCheckToken();
    const response = await fetch(`${this.brokerUrl}/v1/tokens`, {
      method: "POST",
      headers,
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      // 429 and 503 say when to come back (Retry-After, seconds): 60 while paused, 5 while
      // a dependency is down, the budget's own time when rate limited. Ask again then.
      const retryAfter = Number(response.headers.get("Retry-After") || 0);
      if (response.status === 429 || response.status === 503) this.schedule(retryAfter > 0 ? retryAfter : 5);
      throw new Error(`token broker said ${response.status} ${problem.code || ""}`.trim());
    }
    this.current = await response.json(); // {token, identity, expires_at, ttl, grants}
    const secondsLeft = (Date.parse(this.current.expires_at) - Date.now()) / 1000;
    this.schedule(Math.max(secondsLeft - this.refreshMarginSeconds, 1));
    for (const listener of this.listeners) listener(this.current);
    return this.current;
  }

  schedule(seconds) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh().catch(() => {}), seconds * 1000);
  }
}

// Twilio Voice JS SDK: the Device warns `tokenWillExpire` ahead of expiry (set its
// `tokenRefreshMs` option to say how far ahead) and takes a new one with `updateToken`.
export function wireVoiceDevice(device, tokens) {
  device.on("tokenWillExpire", async () => device.updateToken((await tokens.refresh()).token));
  tokens.onToken((fresh) => device.updateToken(fresh.token));
}

// Twilio Conversations (and Sync) JS SDK: the Client emits `tokenAboutToExpire` and
// `tokenExpired`, and takes a new token with `updateToken`.
export function wireConversationsClient(client, tokens) {
  const update = async () => client.updateToken((await tokens.refresh()).token);
  client.on("tokenAboutToExpire", update);
  client.on("tokenExpired", update);
}

// TaskRouter JS SDK (twilio-taskrouter): an agent's Worker emits `tokenExpired` and takes
// a new token with `updateToken`. Ask the broker for `{ task_router: {} }`: the Worker is
// the one the broker's policy gives this signed-in agent, never one the app names.
export function wireTaskRouterWorker(worker, tokens) {
  worker.on("tokenExpired", async () => worker.updateToken((await tokens.refresh()).token));
  tokens.onToken((fresh) => worker.updateToken(fresh.token));
}

// Twilio Video JS SDK: the token is used when connecting to a room; connect with a
// fresh one (reconnects after a network change reuse the room's session).
export async function connectToRoom(connect, tokens, roomName, options = {}) {
  const { token } = await tokens.refresh();
  return connect(token, { ...options, name: roomName });
}
