// Interop driver: the TypeScript SDK v2 (`@modelcontextprotocol/client` 2.4, modern era:
// pinned to 2026-07-28, stateless, no handshake) over StreamableHTTPClientTransport.
// Usage: node ts_modern_client.mjs URL SPEC.json   (spec format: see py_client.py)
import { interopRequire, main, packageVersion, parseArgs, Report, runSpec } from './spec_checks.mjs';

const LABEL = 'ts-modern';
const MODERN = '2026-07-28';
const require = interopRequire();
const { Client, StreamableHTTPClientTransport } = require('@modelcontextprotocol/client');
const sdkVersion = packageVersion('@modelcontextprotocol/client');

await main(LABEL, async () => {
  const { url, spec } = parseArgs('ts_modern_client.mjs');
  const report = new Report(LABEL);
  const client = new Client(
    { name: 'gatehouse-interop-ts-modern', version: sdkVersion },
    { versionNegotiation: { mode: { pin: MODERN } } },
  );
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  try {
    const era = client.getProtocolEra();
    const version = client.getNegotiatedProtocolVersion();
    report.check(era === 'modern' && version === MODERN, `negotiated ${era} ${version} (client ${sdkVersion})`, `expected modern ${MODERN}`);
    await runSpec(report, client, spec);
  } finally {
    await client.close();
  }
  return report.finish();
});
