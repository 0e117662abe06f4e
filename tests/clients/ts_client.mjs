// The TypeScript SDK's Client over StreamableHTTPClientTransport, as an agent would use it.
//
//   node ts_client.mjs URL KEY < steps.json
//
// Sends `Authorization: Bearer KEY` on every request and runs the steps (a JSON list) one after
// another, printing one JSON object per step on its own line:
//   {"op": "list"}                                   -> {"tools": [...every page...]}
//   {"op": "call", "name": N, "arguments": {...}}    -> {"result": {...}}
//   ... with "progress": true                        -> {"result": {...}, "progress": [...]}
//   ... with "cancel": true (after first progress)   -> {"cancelled": true, "progress": [...]}
//   {"op": "ping"}                                   -> {"ping": true}
//   {"op": "resources"}                              -> {"resources": [...], "templates": [...]}
//   {"op": "read", "uri": U}                         -> {"result": {...}}
//   {"op": "prompts"}                                -> {"prompts": [...]}
//   {"op": "prompt", "name": N, "arguments": {...}}  -> {"result": {...}}
//   {"op": "complete", "ref": {...}, "argument": {"name": A, "value": V}} -> {"result": {...}}
//   a "call" with "elicit": ANSWER answers the server's elicitation/create requests during
//   the call with ANSWER (else they are declined)    -> {"result": {...}, "elicited": [...]}
// A step that fails prints {"error": message} and the run goes on.
// The SDK comes from .node/clients (scripts/client-deps), found from this file's location.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const require = createRequire(join(root, ".node", "clients", "package.json"));
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = require("@modelcontextprotocol/sdk/client/streamableHttp.js");
const { ElicitRequestSchema } = require("@modelcontextprotocol/sdk/types.js");

const [url, key] = process.argv.slice(2);
const steps = JSON.parse(readFileSync(0, "utf8"));

async function pages(fetch, field) {
  const items = [];
  let cursor;
  do {
    const page = await fetch(cursor === undefined ? {} : { cursor });
    items.push(...page[field]);
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return items;
}

// What the server's elicitation requests get: the running step's "elicit", and what they were.
const elicitation = { answer: undefined, seen: [] };

async function list(client) {
  const tools = [];
  let cursor;
  do {
    const page = await client.listTools(cursor === undefined ? {} : { cursor });
    tools.push(...page.tools);
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return { tools };
}

async function call(client, step) {
  const progress = [];
  const controller = new AbortController();
  const options = { signal: controller.signal, timeout: 60000 };
  if (step.progress || step.cancel) {
    options.onprogress = (p) => {
      progress.push(p);
      if (step.cancel) controller.abort("cancelled by the test client");
    };
  }
  const params = { name: step.name, arguments: step.arguments ?? {} };
  try {
    const result = await client.callTool(params, undefined, options);
    return step.progress || step.cancel ? { result, progress } : { result };
  } catch (error) {
    if (step.cancel && controller.signal.aborted) return { cancelled: true, progress };
    throw error;
  }
}

async function run(client, step) {
  if (step.op === "list") return list(client);
  if (step.op === "call") {
    elicitation.answer = step.elicit;
    elicitation.seen = [];
    const answer = await call(client, step);
    return step.elicit === undefined ? answer : { ...answer, elicited: elicitation.seen };
  }
  if (step.op === "resources") {
    return {
      resources: await pages((p) => client.listResources(p), "resources"),
      templates: await pages((p) => client.listResourceTemplates(p), "resourceTemplates"),
    };
  }
  if (step.op === "read") return { result: await client.readResource({ uri: step.uri }) };
  if (step.op === "prompts") return { prompts: await pages((p) => client.listPrompts(p), "prompts") };
  if (step.op === "prompt") {
    return { result: await client.getPrompt({ name: step.name, arguments: step.arguments ?? {} }) };
  }
  if (step.op === "complete") {
    return { result: await client.complete({ ref: step.ref, argument: step.argument }) };
  }
  if (step.op === "ping") {
    await client.ping();
    return { ping: true };
  }
  throw new Error(`unknown step ${JSON.stringify(step)}`);
}

const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${key}` } },
});
const client = new Client(
  { name: "mcpadmin-ts-test-client", version: "1.0.0" },
  { capabilities: { elicitation: {} } },
);
client.setRequestHandler(ElicitRequestSchema, async (request) => {
  elicitation.seen.push(request.params);
  return elicitation.answer ?? { action: "decline" };
});
try {
  await client.connect(transport);
} catch (error) {
  console.log(JSON.stringify({ error: String(error?.message ?? error) }));
  process.exit(2);
}
for (const step of steps) {
  let answer;
  try {
    answer = await run(client, step);
  } catch (error) {
    answer = { error: String(error?.message ?? error) };
  }
  console.log(JSON.stringify(answer));
}
await transport.terminateSession().catch(() => {});
await client.close();
