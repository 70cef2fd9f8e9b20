// A real MCP client nobody here wrote (the TypeScript SDK), run by the Go
// tests against the kernel's /mcp: node client.mjs URL TOKEN STEPS_JSON.
// Each step is {tool, args} or {method} (a raw request); the answers are
// printed as one JSON array.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ResultSchema } from "@modelcontextprotocol/sdk/types.js";

const [url, token, stepsJSON] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: "aibos-ts-test", version: "1.0.0" });
const out = [];
try {
  await client.connect(transport);
  for (const step of JSON.parse(stepsJSON)) {
    try {
      if (step.list) {
        const r = await client.listTools();
        out.push({ tools: r.tools.map((t) => t.name) });
      } else if (step.method) {
        const r = await client.request({ method: step.method, params: step.params ?? {} }, ResultSchema);
        out.push({ result: r });
      } else {
        const r = await client.callTool({ name: step.tool, arguments: step.args ?? {} });
        out.push({ result: r });
      }
    } catch (e) {
      out.push({ error: { code: e.code ?? null, message: String(e.message ?? e) } });
    }
  }
  await client.close();
} catch (e) {
  out.push({ fatal: String(e.stack ?? e) });
}
console.log(JSON.stringify(out));
