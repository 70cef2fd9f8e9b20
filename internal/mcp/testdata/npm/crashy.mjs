// A small MCP server over stdio (the TypeScript SDK) for the restart test:
// "pid" answers its process id, "crash" answers and then exits.
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";

const server = new McpServer({ name: "crashy", version: "1.0.0" });
server.registerTool("pid", { description: "Answers the server's process id." }, async () => ({
  content: [{ type: "text", text: String(process.pid) }],
}));
server.registerTool("crash", { description: "Answers, then exits." }, async () => {
  setTimeout(() => process.exit(1), 50);
  return { content: [{ type: "text", text: "bye" }] };
});
await server.connect(new StdioServerTransport());
