// The OpenID provider of the OIDC tests: the certified npm package oidc-provider on a loopback
// port, with one static confidential client (iiifsrv) and two test accounts. Started by the
// `oidc_provider` fixture of tests/oidc/conftest.py:
//
//   node provider.mjs PORT CLIENT_SECRET REDIRECT_URI[,REDIRECT_URI...] [HOST]
//
// HOST names the issuer (default 127.0.0.1; "localhost" puts the provider on another site than
// an iiifsrv on 127.0.0.1, as in real life); it always listens on 127.0.0.1.
// It prints "ready <issuer>" once it listens. Logins use the package's own development login and
// consent pages (devInteractions; they accept any password, so the accounts below are who may
// sign in). Test-only: GET /test/tamper?mode=M alters the id_token of the NEXT token response
// the way an attacker in transit would (signature, unsigned, foreign-key, audience, issuer,
// nonce, expired), so the relying party's checks are tested against this real provider.
import Provider from 'oidc-provider';
import { SignJWT, decodeJwt, exportJWK, generateKeyPair } from 'jose';

const [port, clientSecret, redirectUris, host = '127.0.0.1'] = process.argv.slice(2);
const issuer = `http://${host}:${port}`;
const KID = 'iiifsrv-test-key';

const ACCOUNTS = {
  alice: {
    name: 'Alice Staff',
    preferred_username: 'alice',
    email: 'alice@example.org',
    groups: ['staff', 'readers'],
  },
  bob: {
    name: 'Bob Reader',
    preferred_username: 'bob',
    email: 'bob@example.org',
    groups: ['readers'],
  },
};

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const signingJwk = { ...(await exportJWK(privateKey)), kid: KID, alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'iiifsrv',
      client_secret: clientSecret,
      redirect_uris: redirectUris.split(','),
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  async findAccount(ctx, sub) {
    const profile = ACCOUNTS[sub];
    if (!profile) return undefined;
    return { accountId: sub, async claims() { return { sub, ...profile, email_verified: true }; } };
  },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
  pkce: { required: () => true },
  jwks: { keys: [signingJwk] },
  cookies: { keys: [crypto.randomUUID()] },
  features: { devInteractions: { enabled: true } },
});

// -- the test-only tampering of the next token response ------------------------------------------
let tamper = '';

const b64 = (doc) => Buffer.from(JSON.stringify(doc)).toString('base64url');

async function resign(claims, key = privateKey) {
  return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: KID }).sign(key);
}

async function tampered(idToken, mode) {
  const [header, , signature] = idToken.split('.');
  const claims = decodeJwt(idToken);
  const now = Math.floor(Date.now() / 1000);
  switch (mode) {
    case 'signature': // the claims changed, the provider's signature kept
      return `${header}.${b64({ ...claims, sub: 'alice', groups: ['staff'] })}.${signature}`;
    case 'unsigned':
      return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
    case 'foreign-key':
      return resign(claims, (await generateKeyPair('RS256')).privateKey);
    case 'audience':
      return resign({ ...claims, aud: 'another-client' });
    case 'issuer':
      return resign({ ...claims, iss: 'http://127.0.0.1:9/' });
    case 'nonce':
      return resign({ ...claims, nonce: 'a-nonce-from-another-login' });
    case 'expired':
      return resign({ ...claims, iat: now - 7200, exp: now - 3600 });
    default:
      throw new Error(`unknown tamper mode ${mode}`);
  }
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/test/tamper') {
    tamper = ctx.query.mode || '';
    ctx.status = 204;
    return;
  }
  await next();
  if (ctx.path === '/token' && tamper && ctx.body && ctx.body.id_token) {
    const mode = tamper;
    tamper = '';
    ctx.body = { ...ctx.body, id_token: await tampered(ctx.body.id_token, mode) };
  }
});

provider.listen(Number(port), '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});
