// Interop driver: the TypeScript SDK v1 (`@modelcontextprotocol/sdk` 1.32, legacy era:
// initialize handshake, 2025-11-25 session) over StreamableHTTPClientTransport.
// Usage: node ts_legacy_client.mjs URL SPEC.json   (spec format: see py_client.py)
import { interopRequire, main, packageVersion, parseArgs, Report, runSpec } from './spec_checks.mjs';

const LABEL = 'ts-legacy';
const require = interopRequire();
const { Client } = require('@modelcontextprotocol/sdk/client/index.js');
const { StreamableHTTPClientTransport } = require('@modelcontextprotocol/sdk/client/streamableHttp.js');
const sdkVersion = packageVersion('@modelcontextprotocol/sdk');

await main(LABEL, async () => {
  const { url, spec } = parseArgs('ts_legacy_client.mjs');
  const report = new Report(LABEL);
  const client = new Client({ name: 'gatehouse-interop-ts-legacy', version: sdkVersion });
  const transport = new StreamableHTTPClientTransport(new URL(url));
  await client.connect(transport);
  try {
    const version = transport.protocolVersion;
    report.check(version === '2025-11-25', `negotiated protocol ${version} (sdk ${sdkVersion})`, 'expected 2025-11-25');
    report.check(typeof transport.sessionId === 'string', 'session id issued', `got ${transport.sessionId}`);
    await runSpec(report, client, spec);
    await transport.terminateSession();
  } finally {
    await client.close();
  }
  return report.finish();
});
