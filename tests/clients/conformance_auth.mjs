// Preloaded (`node --import`) into the conformance suite, which has no option for credentials:
// every request it makes, through the global fetch (the SDK client, the stateless harness),
// undici's request (the scenarios that set Host/Origin themselves) or node:http (the header
// validation scenario), gets the header MCPADMIN_AUTH_HEADER ("Name: value") unless it already
// has one of that name. MCPADMIN_CONFORMANCE_PACKAGE is the suite's package.json.
import http from "node:http";
import { createRequire } from "node:module";

const [name, ...rest] = (process.env.MCPADMIN_AUTH_HEADER ?? "").split(":");
const value = rest.join(":").trim();
if (!name || !value) throw new Error("MCPADMIN_AUTH_HEADER must be 'Name: value'");

function withHeader(headers = {}) {
  const present = Object.keys(headers).some((k) => k.toLowerCase() === name.toLowerCase());
  return present ? headers : { ...headers, [name]: value };
}

const originalFetch = globalThis.fetch;
globalThis.fetch = (input, init = {}) => {
  const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : {}));
  if (!headers.has(name)) headers.set(name, value);
  return originalFetch(input, { ...init, headers });
};

// The suite imports undici as CommonJS; its named exports are read from module.exports when
// the suite first imports it, so replacing `request` here (earlier) is what the suite gets.
const undici = createRequire(process.env.MCPADMIN_CONFORMANCE_PACKAGE)("undici");
const originalRequest = undici.request;
undici.request = (url, options = {}) =>
  originalRequest(url, { ...options, headers: withHeader(options.headers) });

const originalHttpRequest = http.request;
http.request = (options, ...rest) =>
  typeof options === "object" && !(options instanceof URL)
    ? originalHttpRequest({ ...options, headers: withHeader(options.headers) }, ...rest)
    : originalHttpRequest(options, ...rest);
