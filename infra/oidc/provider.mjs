// A local OpenID Connect provider for `make run` and `make test` (infra/up.sh starts it):
// oidc-provider with its development interactions (any login, any password), one confidential
// client for the gateway, signing keys kept in the state directory across restarts.
// Development only: accounts are made up from the login, sessions live in memory.
//
// Env: OIDC_PORT (9400), OIDC_CLIENT_ID (gateway-platform), OIDC_CLIENT_SECRET
// (local-dev-secret), OIDC_EXTRA_REDIRECT_URIS (comma-separated full URIs), OIDC_JWKS_FILE
// ($STATE_DIR/oidc/jwks.json, STATE_DIR defaulting to <repo root>/.local).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const HOST = '127.0.0.1';
const CALLBACK_PATHS = ['/api/v1/oauth/local/callback', '/api/v1/oauth/local-proxied/callback'];
const DAY = 24 * 60 * 60;

function fail(message) {
  console.error(`oidc: ERROR: ${message}`);
  process.exit(1);
}

function setting(name, fallback) {
  const value = process.env[name];
  return value === undefined || value.trim() === '' ? fallback : value.trim();
}

// oidc-provider 9 uses URL.parse and crypto.hash: Node.js 20.18 or newer.
if (typeof URL.parse !== 'function' || typeof crypto.hash !== 'function') {
  fail(`Node.js 20.18 or newer is needed (this is ${process.version})`);
}
let Provider;
try {
  ({ default: Provider } = await import('oidc-provider'));
} catch (error) {
  fail(`cannot load oidc-provider (${error.message}); run \`npm ci --omit=dev\` in infra/oidc (make infra does)`);
}

const port = Number(setting('OIDC_PORT', '9400'));
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  fail(`OIDC_PORT must be a TCP port, not ${JSON.stringify(process.env.OIDC_PORT)}`);
}
const issuer = `http://${HOST}:${port}`;
const clientId = setting('OIDC_CLIENT_ID', 'gateway-platform');
const clientSecret = setting('OIDC_CLIENT_SECRET', 'local-dev-secret');
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const stateDir = path.resolve(setting('STATE_DIR', path.join(repoRoot, '.local')));
const jwksFile = path.resolve(setting('OIDC_JWKS_FILE', path.join(stateDir, 'oidc', 'jwks.json')));

// Loopback redirect URIs without a port: the client is `native`, so oidc-provider compares
// http loopback URIs with the port left out (RFC 8252 section 7.3) and any gateway port matches.
const redirectUris = [];
for (const host of ['127.0.0.1', 'localhost']) {
  for (const callback of CALLBACK_PATHS) redirectUris.push(`http://${host}${callback}`);
}
for (const uri of setting('OIDC_EXTRA_REDIRECT_URIS', '').split(',')) {
  if (uri.trim() && !redirectUris.includes(uri.trim())) redirectUris.push(uri.trim());
}

// One RS256 key, generated on the first start and kept as a private JWKS (mode 0600).
function loadOrCreateJwks(file) {
  if (fs.existsSync(file)) {
    let jwks;
    try {
      jwks = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (error) {
      fail(`cannot read the signing keys in ${file} (${error.message}); delete it to make new ones`);
    }
    const usable = Array.isArray(jwks?.keys)
      && jwks.keys.some((key) => key.kty === 'RSA' && key.d && key.alg === 'RS256');
    if (!usable) fail(`${file} holds no private RS256 key; delete it to make new ones`);
    return jwks;
  }
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  // RFC 7638 thumbprint: the required members in lexicographic order
  const kid = crypto.createHash('sha256')
    .update(JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n }))
    .digest('base64url');
  const jwks = { keys: [{ ...jwk, kid, alg: 'RS256', use: 'sig' }] };
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, `${JSON.stringify(jwks, null, 2)}\n`, { mode: 0o600 });
    fs.renameSync(tmp, file);
  } catch (error) {
    fail(`cannot write the signing keys to ${file}: ${error.message}`);
  }
  console.log(`oidc: generated a new RS256 signing key (kid ${kid}) in ${file}`);
  return jwks;
}

const jwks = loadOrCreateJwks(jwksFile);
const signingKey = jwks.keys.find((key) => key.kty === 'RSA' && key.d && key.alg === 'RS256');
// Cookie signing keys derived from the private key: stable across restarts, nothing more to store.
const cookieKey = crypto.createHmac('sha256', Buffer.from(signingKey.d, 'base64url'))
  .update('local oidc provider cookie keys')
  .digest('base64url');

// Any login is accepted by the development login form and becomes an account: its id (sub)
// is the login trimmed and lowercased, so "Dev@Example.com" and "dev@example.com" are the same
// person.
function normalizeLogin(login) {
  return String(login).trim().toLowerCase();
}

function accountFor(login) {
  const normalized = normalizeLogin(login);
  if (!normalized) return undefined;
  return {
    sub: normalized,
    email: normalized.includes('@') ? normalized : `${normalized}@example.com`,
    email_verified: !normalized.startsWith('unverified'),
    name: normalized.split('@')[0] || normalized,
  };
}

function htmlEscape(value) {
  return String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const configuration = {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    application_type: 'native',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: redirectUris,
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  // oidc-provider 9 accepts a client_secret_basic client's secret in the body too (and a
  // client_secret_post client's in the Authorization header); no other method is offered
  clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
  jwks,
  cookies: { keys: [cookieKey] },
  scopes: ['openid', 'email', 'profile'],
  claims: {
    acr: null,
    auth_time: null,
    iss: null,
    sid: null,
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  // the ID token carries the scope's claims too, not only the userinfo endpoint
  conformIdTokenClaims: false,
  responseTypes: ['code'],
  pkce: { required: () => true }, // S256 is the only method oidc-provider 9 implements
  features: {
    devInteractions: { enabled: true },
    userinfo: { enabled: true },
  },
  // The client is a server; browsers need no CORS access to the endpoints.
  clientBasedCORS: () => false,
  async findAccount(ctx, id) {
    const account = accountFor(id);
    if (!account) return undefined;
    return { accountId: account.sub, claims: async () => ({ ...account }) };
  },
  // oidc-provider's defaults, as numbers (the default functions log a notice)
  ttl: {
    AccessToken: 60 * 60,
    AuthorizationCode: 60,
    IdToken: 60 * 60,
    Interaction: 60 * 60,
    Session: 14 * DAY,
    Grant: 14 * DAY,
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>oops! something went wrong</title></head>
<body><h1>oops! something went wrong</h1>
${Object.entries(out).map(([key, value]) => `<pre><strong>${htmlEscape(key)}</strong>: ${htmlEscape(value)}</pre>`).join('\n')}
</body></html>`;
  },
};

let provider;
try {
  provider = new Provider(issuer, configuration);
  // validates the static client now rather than on its first request
  if (!(await provider.Client.find(clientId))) fail(`client ${clientId} could not be loaded`);
} catch (error) {
  fail(`invalid configuration: ${error.message}${error.error_description ? ` (${error.error_description})` : ''}`);
}

// oidc-provider 9 always takes sub from the account id, and the development login page hands
// the login over as typed: it is normalized on its way into the session, so that the session,
// the grants of the development consent page and the account agree on one id. A blank login
// (spaces only) ends the request with access_denied rather than a server error.
const interactionFinished = provider.interactionFinished.bind(provider);
provider.interactionFinished = (req, res, result, options) => {
  if (result?.login?.accountId !== undefined) {
    const accountId = normalizeLogin(result.login.accountId);
    return interactionFinished(req, res, accountId
      ? { ...result, login: { ...result.login, accountId } }
      : { error: 'access_denied', error_description: 'a blank login is no account' }, options);
  }
  return interactionFinished(req, res, result, options);
};

provider.on('server_error', (ctx, error) => {
  console.error(`oidc: server error on ${ctx.method} ${ctx.path}:`, error);
});
// what the client is told, and why (invalid_grant's description is deliberately vague)
for (const event of ['authorization.error', 'grant.error', 'userinfo.error']) {
  provider.on(event, (ctx, error) => {
    const detail = error.error_detail || error.cause?.message;
    console.warn(`oidc: ${event} on ${ctx.method} ${ctx.path}: ${error.message}`
      + `${error.error_description ? ` (${error.error_description})` : ''}`
      + `${detail && detail !== error.error_description ? `: ${detail}` : ''}`);
  });
}

const server = http.createServer(provider.callback());
server.on('error', (error) => {
  if (error.code === 'EADDRINUSE') fail(`${HOST}:${port} is already in use`);
  fail(`cannot listen on ${HOST}:${port}: ${error.message}`);
});
server.listen(port, HOST, () => {
  console.log(`oidc: listening on ${issuer} (issuer ${issuer}, client ${clientId}, `
    + `${redirectUris.length} redirect URIs, keys ${jwksFile}, kid ${signingKey.kid})`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
