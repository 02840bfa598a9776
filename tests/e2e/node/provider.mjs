// A real OpenID provider (panva's certified oidc-provider) on loopback, for the tests.
// Usage: node provider.mjs CONFIG.json, where CONFIG holds the port, the issuer, the
// signing keys (private JWKs: the first key of an algorithm signs) and the API audience.
// Access tokens are JWTs for that audience (RFC 9068: typ at+jwt), RS256 for the
// client-credentials client and ES256 for the app's authorization-code flow.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

const provider = new Provider(config.issuer, {
  clients: [
    {
      client_id: 'backend',
      client_secret: config.client_secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
    },
    {
      client_id: 'app',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
      redirect_uris: [config.redirect_uri],
      response_types: ['code'],
      id_token_signed_response_alg: 'RS256',
    },
  ],
  jwks: { keys: config.keys },
  scopes: ['openid', 'twilio:voice'],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => config.audience,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resource, client) => {
        if (resource !== config.audience) throw new Error('unknown resource');
        return {
          scope: 'twilio:voice',
          audience: config.audience,
          accessTokenFormat: 'jwt',
          accessTokenTTL: 600,
          jwt: { sign: { alg: client.clientId === 'backend' ? 'RS256' : 'ES256' } },
        };
      },
    },
  },
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id }),
  }),
});
provider.proxy = false;

const server = provider.listen(config.port, '127.0.0.1', () => {
  console.log(`listening on ${config.issuer}`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
