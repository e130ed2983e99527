// A real OpenID Connect provider for the tests: `oidc-provider` (an OpenID
// Certified implementation) with one confidential client, PKCE required, a
// `groups` claim, and accounts given by the caller. Test-only: in-memory
// storage, keys made at start, plain HTTP on 127.0.0.1.
//
// Started by crates/caduceus-identity/tests/support/oidc_provider.rs. All
// configuration comes from the environment:
//
//   OIDC_PORT                 port to listen on (default 0: pick a free one)
//   OIDC_CLIENT_ID            the relying party's client_id
//   OIDC_CLIENT_SECRET        its client_secret (client_secret_basic or _post)
//   OIDC_REDIRECT_URIS        its redirect URIs, separated by spaces
//   OIDC_ACCOUNTS             JSON array of accounts: {"login", "password",
//                             "sub" (default: login), and any claims, e.g.
//                             "email", "name", "preferred_username", "groups"}
//   OIDC_CLAIMS_IN_ID_TOKEN   "1" (default): the ID token carries every claim
//                             the scopes grant; "0": only `sub` and the
//                             protocol claims, the rest from UserInfo (the
//                             spec's default for the code flow)
//   OIDC_EXIT_WITH_STDIN      "1": exit when standard input closes, so that a
//                             killed test run leaves no provider behind
//
// When it listens it prints one JSON line on stdout: {"issuer":"http://..."}.
//
// The login and consent pages are minimal HTML forms (one <form>, hidden
// inputs plus `login` and `password`), easy for a non-browser to drive.
// Unlike the library's devInteractions, the password is checked.

import { createHash, generateKeyPairSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

function fail(message) {
  process.stderr.write(`oidc test provider: ${message}\n`);
  process.exit(2);
}

function required(name) {
  const value = process.env[name];
  if (!value) fail(`${name} is required`);
  return value;
}

const port = Number.parseInt(process.env.OIDC_PORT ?? '0', 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail('OIDC_PORT must be a port number');
const clientId = required('OIDC_CLIENT_ID');
const clientSecret = required('OIDC_CLIENT_SECRET');
const redirectUris = required('OIDC_REDIRECT_URIS').split(/\s+/).filter(Boolean);
const claimsInIdToken = (process.env.OIDC_CLAIMS_IN_ID_TOKEN ?? '1') !== '0';

let accountList;
try {
  accountList = JSON.parse(required('OIDC_ACCOUNTS'));
} catch (err) {
  fail(`OIDC_ACCOUNTS is not JSON: ${err.message}`);
}
if (!Array.isArray(accountList)) fail('OIDC_ACCOUNTS must be a JSON array');

const byLogin = new Map();
const bySub = new Map();
for (const entry of accountList) {
  const { login, password, ...claims } = entry ?? {};
  if (typeof login !== 'string' || typeof password !== 'string') {
    fail('every account needs a string "login" and "password"');
  }
  const account = { login, password, claims: { ...claims, sub: String(claims.sub ?? login) } };
  byLogin.set(login, account);
  bySub.set(account.claims.sub, account);
}

const digest = (text) => createHash('sha256').update(text, 'utf8').digest();
const samePassword = (given, expected) => timingSafeEqual(digest(given), digest(expected));

const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(res, status, title, body) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(`<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>\n<body>\n${body}\n</body></html>\n`);
}

function loginPage(res, uid, status, message) {
  page(res, status, 'Sign in', `<h1>Sign in</h1>
${message ? `<p class="error">${escapeHtml(message)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<input type="text" name="login" autocomplete="username">
<input type="password" name="password" autocomplete="current-password">
<button type="submit">Sign in</button>
</form>`);
}

function consentPage(res, uid, client, details) {
  const scopes = (details.missingOIDCScope ?? []).map((s) => `<li>${escapeHtml(s)}</li>`).join('');
  page(res, 200, 'Authorize', `<h1>Authorize ${escapeHtml(client?.clientId ?? '')}</h1>
<ul>${scopes}</ul>
<form method="post" action="/interaction/${escapeHtml(uid)}/confirm">
<input type="hidden" name="prompt" value="consent">
<button type="submit">Continue</button>
</form>`);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' };

const configuration = {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: redirectUris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  // Every flow must carry a PKCE S256 challenge, confidential client or not.
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  conformIdTokenClaims: !claimsInIdToken,
  async findAccount(_ctx, sub) {
    const account = bySub.get(sub);
    if (!account) return undefined;
    return { accountId: sub, async claims() { return { ...account.claims }; } };
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  features: { devInteractions: { enabled: false } },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  jwks: { keys: [signingKey] },
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html>\n<html><body><h1>error</h1><pre class="error">${escapeHtml(JSON.stringify(out))}</pre></body></html>\n`;
  },
};

async function interaction(provider, req, res, path) {
  const [, uid, action] = path.match(/^\/interaction\/([^/]+)(?:\/(login|confirm))?$/) ?? [];
  if (!uid) return page(res, 404, 'Not found', '<p class="error">no such page</p>');
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    return page(res, 400, 'Error', `<p class="error">${escapeHtml(err.message)}</p>`);
  }
  if (details.uid !== uid) return page(res, 400, 'Error', '<p class="error">interaction mismatch</p>');
  const { prompt, params, session, grantId } = details;

  if (req.method === 'GET' && !action) {
    if (prompt.name === 'login') return loginPage(res, uid, 200);
    if (prompt.name === 'consent') {
      const client = await provider.Client.find(params.client_id);
      return consentPage(res, uid, client, prompt.details);
    }
    return page(res, 501, 'Error', `<p class="error">prompt ${escapeHtml(prompt.name)} not implemented</p>`);
  }
  if (req.method !== 'POST') return page(res, 405, 'Error', '<p class="error">method not allowed</p>');

  const form = await readForm(req);
  if (action === 'login' && prompt.name === 'login') {
    const account = byLogin.get(form.get('login') ?? '');
    const password = form.get('password') ?? '';
    if (!account || !samePassword(password, account.password)) {
      return loginPage(res, uid, 401, 'invalid login or password');
    }
    return provider.interactionFinished(req, res, { login: { accountId: account.claims.sub } }, {
      mergeWithLastSubmission: false,
    });
  }
  if (action === 'confirm' && prompt.name === 'consent') {
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    return provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, {
      mergeWithLastSubmission: true,
    });
  }
  return page(res, 400, 'Error', `<p class="error">unexpected ${escapeHtml(action)} for prompt ${escapeHtml(prompt.name)}</p>`);
}

let provider;
let providerCallback;
const server = createServer((req, res) => {
  const path = new URL(req.url ?? '/', 'http://placeholder').pathname;
  if (path.startsWith('/interaction/')) {
    interaction(provider, req, res, path).catch((err) => {
      process.stderr.write(`oidc test provider: interaction: ${err.stack ?? err}\n`);
      if (!res.headersSent) page(res, 500, 'Error', '<p class="error">internal error</p>');
    });
    return;
  }
  providerCallback(req, res);
});

server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  provider = new Provider(issuer, configuration);
  providerCallback = provider.callback();
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

if (process.env.OIDC_EXIT_WITH_STDIN === '1') {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
