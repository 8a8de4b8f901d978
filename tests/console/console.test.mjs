// The console in a real browser: Debian's headless Chromium driven by playwright-core.
//
// Starts `gatehouse up` with an administrator (alice), a member (bob), an agent bundle
// (reporter) and a virtual server over the repo's mcp-echo program; signs in through the real
// login page; makes real MCP calls with the TypeScript SDK's client (as the agent, with a
// client-credentials token) and sees them appear in the live Activity feed; opens one event's
// audit record; decommissions the agent in the console and checks its next call fails; and
// writes a screenshot of each page to docs/console/*.png.
//
// Environment: GATEHOUSE_BIN, GATEHOUSE_ECHO_BIN (mcp-echo), GATEHOUSE_CONSOLE_CHROMIUM,
// GATEHOUSE_CONSOLE_SHOTS (where screenshots go). Run by tests/console/run.sh.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync, rmSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const gatehouseBin = required('GATEHOUSE_BIN');
const echoBin = required('GATEHOUSE_ECHO_BIN');
const chromiumBin = process.env.GATEHOUSE_CONSOLE_CHROMIUM || '/usr/bin/chromium';
const shots = required('GATEHOUSE_CONSOLE_SHOTS');
const AGENT_SECRET = 'browser-agent-secret-canary-5d2e8b1f7a';
const ALICE = ['alice', 'interop-alice-pw'];
const BOB = ['bob', 'interop-bob-pw'];

function required(name) {
  const value = process.env[name];
  if (!value) { throw new Error(`${name} is not set`); }
  return value;
}

const work = mkdtempSync(join(tmpdir(), 'gatehouse-console-'));
let gatehouse;
let browser;
after(async () => {
  if (browser) { await browser.close(); }
  if (gatehouse && gatehouse.exitCode === null) {
    const exited = new Promise((resolve) => gatehouse.once('exit', resolve));
    gatehouse.kill('SIGTERM');
    await exited;
  }
  rmSync(work, { recursive: true, force: true, maxRetries: 5 });
});

function gatewayFile() {
  const dir = dirname(echoBin);
  return `connectors:
  - name: local
    stdio: {command: "${echoBin}", args: [stdio], paths: ["${dir}"]}
  - name: tickets
    http: {url: "http://127.0.0.1:9/mcp"}
    credentials:
      mode: per_member
      oauth:
        client_id: gatehouse-tickets
        authorization_endpoint: "http://127.0.0.1:9/authorize"
        token_endpoint: "http://127.0.0.1:9/token"
        scopes: [read]
virtual_servers:
  - name: tools
    description: Everyday tools for agents and people
    connectors: [{connector: local, prefix: "", allow: [echo, add, fail, env]}]
authorization:
  members:
    - {username: alice, groups: [gatehouse-admins, staff], password_hash: "$argon2id$v=19$m=19456,t=2,p=1$/SyjtdQIUVuDrMB/aIf0hA$2OhqoGiUPFaUH+SvenyEJ7YxFR7c++IgcNpd9qqhxwI"}
    - {username: bob, groups: [staff], password_hash: "$argon2id$v=19$m=19456,t=2,p=1$Yy1JEh/xJuHGD6/umr6R7Q$aLA5L5tl+8hiiG4ISOp4Z7Titj4H/nFpE5lPaR6h/kE"}
  agents:
    - {name: reporter, description: Nightly report writer, owner: bob, virtual_servers: [tools], secret_env: CONSOLE_AGENT_SECRET}
policies:
  cedar: |
    @id("everyone")
    permit(principal, action, resource);
    @id("no-env-for-agents")
    forbid(principal is Agent, action == Action::"call_tool", resource is Tool)
    when { resource.name == "env" };
dlp:
  rules:
    - virtual_server: tools
      input: {action: block, detectors: [ssn]}
`;
}

/** Starts `gatehouse up` and resolves its origin once it prints its readiness line. */
function startGatehouse() {
  const config = join(work, 'gatehouse.yaml');
  writeFileSync(config, gatewayFile());
  gatehouse = spawn(gatehouseBin, ['up', '--listen', '127.0.0.1:0', '--config', config, '--data', join(work, 'data')], {
    env: { ...process.env, CONSOLE_AGENT_SECRET: AGENT_SECRET, RUST_LOG: 'warn' },
    stdio: ['ignore', 'pipe', openSync(join(work, 'gatehouse.log'), 'w')],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('gatehouse not ready in 60 s')), 60_000);
    gatehouse.on('exit', (code) => reject(new Error(`gatehouse exited with ${code}`)));
    createInterface({ input: gatehouse.stdout }).on('line', (line) => {
      const ready = line.match(/^gatehouse ready at (\S+)/);
      if (ready) { clearTimeout(timer); resolve(ready[1]); }
    });
  });
}

async function agentToken(origin, resource) {
  const response = await fetch(`${origin}/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: 'Basic ' + Buffer.from(`reporter:${AGENT_SECRET}`).toString('base64'),
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource }),
  });
  return { status: response.status, token: response.ok ? (await response.json()).access_token : null };
}

/** Connects the TypeScript SDK's MCP client as the agent. */
async function agentClient(origin) {
  const url = `${origin}/v/tools/mcp`;
  const { status, token } = await agentToken(origin, url);
  assert.equal(status, 200, 'the agent gets a token');
  const client = new Client({ name: 'console-browser-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
  }));
  return client;
}

/** Polls `check` until it returns true or `ms` pass. */
async function eventually(what, check, ms = 20_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) { return; }
    if (Date.now() > deadline) { throw new Error(`timed out waiting for ${what}`); }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function signIn(page, origin, [username, password]) {
  await page.goto(`${origin}/console/`);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Allow' }).click();
  await page.waitForURL(/\/console\/(activity|accounts)$/);
}

async function shot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

test('the console shows real MCP calls live, and decommissioning an agent stops its next call', async () => {
  mkdirSync(shots, { recursive: true });
  const origin = await startGatehouse();
  browser = await chromium.launch({ executablePath: chromiumBin, headless: true, args: ['--no-sandbox'] });
  const admin = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  const page = await admin.newPage();

  const agent = await agentClient(origin);
  const tools = await agent.listTools();
  // The agent-only forbid matches the agent itself: env is not listed, and calling it is denied.
  assert.deepEqual(tools.tools.map((tool) => tool.name).sort(), ['add', 'echo', 'fail']);
  const echoed = await agent.callTool({ name: 'echo', arguments: { text: 'hello from the agent' } });
  assert.equal(echoed.content[0].text, 'hello from the agent');
  await agent.callTool({ name: 'add', arguments: { a: 2, b: 3 } });

  await signIn(page, origin, ALICE);
  assert.match(page.url(), /\/console\/activity$/);
  const feed = page.locator('#feed');
  await eventually('the agent call in the feed', async () => (await feed.innerText()).includes('echo'))
    .catch(async (error) => { console.log(await feed.innerText()); throw error; });
  const before = await feed.locator('tr', { hasText: 'tools/call' }).count();

  // More calls while the page is open: the feed shows them without a reload.
  await agent.callTool({ name: 'echo', arguments: { text: 'live' } });
  await agent.callTool({ name: 'fail', arguments: {} });
  await agent.callTool({ name: 'env', arguments: { name: 'HOME' } }).catch(() => {});
  await agent.callTool({ name: 'echo', arguments: { text: 'my ssn is 123-45-6789' } }).catch(() => {});
  await eventually('the live feed to update', async () => (await feed.locator('tr', { hasText: 'tools/call' }).count()) > before);
  await eventually('a DLP hit highlighted', async () => (await feed.locator('tr.row-dlp').count()) > 0);
  await eventually('the agent\'s denied call highlighted', async () => (await feed.locator('tr.row-denied', { hasText: 'env' }).count()) > 0);
  assert.ok((await feed.innerText()).includes('token issued'), 'the feed shows token events too');
  await page.reload();
  await page.locator('svg.chart rect').first().waitFor();
  await shot(page, 'activity');

  // One call's full audit record and trace id.
  await page.locator('#feed tr', { hasText: 'echo' }).first().locator('a').click();
  await page.waitForURL(/\/console\/activity\/\d+$/);
  const traceId = await page.locator('#trace-id').innerText();
  assert.match(traceId, /^[0-9a-f]{32}$/, 'the call carries the trace id of its request');
  assert.notEqual(traceId, '0'.repeat(32));
  const record = await page.locator('pre.record').innerText();
  assert.match(record, /"eventId"/, 'the full audit record is shown');
  assert.match(record, /"virtualServer": "tools"/);
  assert.ok(record.includes(`"traceId": "${traceId}"`), 'the page shows the record\'s trace id');
  await shot(page, 'event');

  await page.getByRole('link', { name: 'Connectors', exact: true }).click();
  await page.getByRole('heading', { level: 1, name: 'Connectors' }).waitFor();
  await shot(page, 'connectors');

  await page.getByRole('link', { name: 'Virtual servers', exact: true }).click();
  const agentRole = page.locator('tr', { hasText: 'Agent reporter' });
  assert.equal((await agentRole.innerText()).includes('env'), false, 'policy hides env from agents');
  await shot(page, 'virtual-servers');

  await page.getByRole('link', { name: 'Agents', exact: true }).click();
  const row = page.locator('tbody tr', { hasText: 'reporter' });
  const facts = await row.innerText();
  assert.ok(facts.includes('bob'), 'the owner is shown');
  // Counts need agent calls audited with the agent's client id.
  assert.doesNotMatch(facts, /\t0\t–\t/, `the agent's calls are counted: ${facts}`);
  await shot(page, 'agents');
  await row.getByRole('link', { name: 'Decommission' }).click();
  await page.getByLabel('Reason (kept in the audit record)').fill('leaked in a screenshot');
  await shot(page, 'decommission');
  await page.getByRole('button', { name: 'Decommission reporter' }).click();
  await page.waitForURL(/\/console\/agents$/);
  await page.locator('tbody tr', { hasText: 'reporter' }).getByText('decommissioned').waitFor();
  await page.goto(`${origin}/console/activity?show=admin`);
  await eventually('the decommission in the admin feed',
    async () => (await feed.innerText()).includes('decommission agent bundle reporter'));

  // Its next call fails: the open session's token is revoked, and it gets no new token.
  await assert.rejects(agent.callTool({ name: 'echo', arguments: { text: 'after' } }), 'the next call fails');
  assert.equal((await agentToken(origin, `${origin}/v/tools/mcp`)).status, 401, 'no new token');
  await agent.close().catch(() => {});

  // A member sees only their connected accounts.
  const member = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  const memberPage = await member.newPage();
  await signIn(memberPage, origin, BOB);
  assert.match(memberPage.url(), /\/console\/accounts$/);
  assert.equal(await memberPage.getByRole('link', { name: 'Agents' }).count(), 0);
  await memberPage.getByRole('button', { name: 'Connect' }).waitFor();
  await shot(memberPage, 'connected-accounts');
});
