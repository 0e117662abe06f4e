// A real OpenID Connect provider for the single sign-on tests: the npm `oidc-provider`
// package (OpenID Certified), with its own development login and consent pages.
//
//   node oidc_provider.mjs --port N --config config.json
//
// config.json: {"client": {"client_id", "client_secret", "redirect_uris": [...]},
//               "accounts": {"<login>": {"email", "email_verified", "name", "groups"}}}
// The issuer is http://127.0.0.1:N. One confidential client (client_secret_basic, PKCE
// required); any password signs in a login listed in "accounts". The ID token carries the
// account's claims (`email`, `name`, `groups`...), not only userinfo.
//
// Test controls on the same port (never part of a real provider):
//   POST /__test/next-id-token {"mode": M}  alters the ID token of the next token response:
//     tamper           one byte of the signature flipped
//     expired          exp and iat an hour ago, re-signed with the provider's key
//     wrong-issuer     iss of another provider, re-signed
//     wrong-audience   aud of another client, re-signed
//     extra-audience   aud [client, another client] without azp, re-signed
//     replay           the ID token of the previous token response (another sign-in's nonce)
//     bare             only the claims OpenID Connect requires, re-signed (the others are
//                      left to the userinfo endpoint)
//   POST /__test/redirect-uri {"uri": U}     allows one more redirect URI for the client.
// Both answer {"ok": true}. The pages load nothing from other hosts (the web font their
// layout imports is left out).
// oidc-provider and jose come from .node/clients (scripts/client-deps).
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const require = createRequire(join(root, ".node", "clients", "package.json"));
const load = (name) => import(pathToFileURL(require.resolve(name)).href);
const { default: Provider } = await load("oidc-provider");
const jose = await load("jose");

const { values: args } = parseArgs({
  options: { port: { type: "string" }, config: { type: "string" } },
});
const port = Number(args.port);
const config = JSON.parse(readFileSync(args.config, "utf8"));
const issuer = `http://127.0.0.1:${port}`;
const accounts = config.accounts;

const { privateKey } = await jose.generateKeyPair("RS256", { extractable: true });
const signingKey = { ...(await jose.exportJWK(privateKey)), kid: "peer-key", alg: "RS256", use: "sig" };

const provider = new Provider(issuer, {
  clients: [{
    client_id: config.client.client_id,
    client_secret: config.client.client_secret,
    redirect_uris: config.client.redirect_uris,
    grant_types: ["authorization_code"],
    response_types: ["code"],
    token_endpoint_auth_method: "client_secret_basic",
  }],
  jwks: { keys: [signingKey] },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, ...account };
      },
    };
  },
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name", "preferred_username", "groups"],
  },
  // Scope claims go into the ID token too (as Okta, Entra and Keycloak can be set to do).
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ["oidc-peer-cookie-key-for-tests-only"] },
});

let nextMode = null;
let previousIdToken = null;

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
}

async function resign(idToken, change) {
  const header = jose.decodeProtectedHeader(idToken);
  const claims = change(jose.decodeJwt(idToken));
  return new jose.SignJWT(claims).setProtectedHeader(header).sign(privateKey);
}

const now = () => Math.floor(Date.now() / 1000);
const ALTER = {
  tamper: async (token) => {
    const [head, body, signature] = token.split(".");
    const bytes = Buffer.from(signature, "base64url");
    bytes[0] ^= 0xff;
    return [head, body, bytes.toString("base64url")].join(".");
  },
  expired: (token) => resign(token, (c) => ({ ...c, iat: now() - 3600, exp: now() - 3000 })),
  "wrong-issuer": (token) => resign(token, (c) => ({ ...c, iss: "http://127.0.0.1:9/elsewhere" })),
  "wrong-audience": (token) => resign(token, (c) => ({ ...c, aud: "another-client" })),
  "extra-audience": (token) => resign(token, (c) => {
    const { azp, ...rest } = c;
    return { ...rest, aud: [c.aud, "another-client"] };
  }),
  replay: async (token) => previousIdToken ?? token,
  bare: (token) => resign(token, ({ iss, sub, aud, exp, iat, nonce, auth_time }) => (
    { iss, sub, aud, exp, iat, nonce, auth_time })),
};

provider.use(async (ctx, next) => {
  if (ctx.method === "POST" && ctx.path === "/__test/next-id-token") {
    const { mode } = await readJson(ctx.req);
    if (!(mode in ALTER)) ctx.throw(400, `unknown mode ${mode}`);
    nextMode = mode;
    ctx.body = { ok: true };
    return;
  }
  if (ctx.method === "POST" && ctx.path === "/__test/redirect-uri") {
    const { uri } = await readJson(ctx.req);
    const client = await provider.Client.find(config.client.client_id);
    if (!client.redirectUris.includes(uri)) client.redirectUris.push(uri);
    ctx.body = { ok: true };
    return;
  }
  await next();
  if (typeof ctx.body === "string") {
    // The development pages import a web font: nothing here leaves this machine.
    ctx.body = ctx.body.replace(/@import url\(https:\/\/fonts\.googleapis\.com[^)]*\);/, "");
  }
  const issued = ctx.path === "/token" && ctx.status === 200 ? ctx.body?.id_token : undefined;
  if (issued) {
    const mode = nextMode;
    nextMode = null;
    if (mode) ctx.body = { ...ctx.body, id_token: await ALTER[mode](issued) };
    previousIdToken = issued;
  }
});

createServer(provider.callback()).listen(port, "127.0.0.1", () => {
  console.log(`oidc provider ${issuer}`);
});
