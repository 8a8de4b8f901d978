//! Downstream MCP servers that edge-svc reaches as a client.
