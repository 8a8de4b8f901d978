// Shared checks of the TypeScript interop drivers: list tools, compare with the JSON spec
// (present/absent names, exact descriptions), call tools and compare their text results.
// The spec format is documented in py_client.py. Packages are loaded from the interop cache
// (GATEHOUSE_INTEROP_NODE_MODULES, written by install.sh), never from the repository tree.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

/** Returns a `require` that resolves packages from the interop npm project. */
export function interopRequire() {
  const dir = process.env.GATEHOUSE_INTEROP_NODE_MODULES;
  if (!dir) {
    throw new Error('GATEHOUSE_INTEROP_NODE_MODULES is not set (source the env file install.sh prints)');
  }
  return createRequire(path.join(dir, 'gatehouse-interop-resolver.cjs'));
}

/** Returns the installed version of an npm package from the interop cache (read from disk:
 * packages' `exports` maps do not all expose package.json). */
export function packageVersion(name) {
  const file = path.join(process.env.GATEHOUSE_INTEROP_NODE_MODULES, name, 'package.json');
  return JSON.parse(readFileSync(file, 'utf8')).version;
}

/** Parses `URL SPEC.json` from argv or exits 2 with a usage line. */
export function parseArgs(script) {
  const [url, specPath] = process.argv.slice(2);
  if (!url || !specPath) {
    console.error(`usage: node ${script} URL SPEC.json`);
    process.exit(2);
  }
  return { url, spec: JSON.parse(readFileSync(specPath, 'utf8')) };
}

/** Collects ok/FAIL lines for one driver. */
export class Report {
  constructor(label) {
    this.label = label;
    this.failures = 0;
  }

  check(ok, what, detail = '') {
    if (!ok) this.failures += 1;
    const suffix = !ok && detail ? `: ${detail}` : '';
    console.log(`[${this.label}] ${ok ? 'ok  ' : 'FAIL'} ${what}${suffix}`);
  }

  finish() {
    console.log(`[${this.label}] ${this.failures === 0 ? 'passed' : `${this.failures} check(s) failed`}`);
    return this.failures === 0 ? 0 : 1;
  }
}

function resultText(result) {
  return (result.content ?? [])
    .filter((block) => block.type === 'text')
    .map((block) => block.text)
    .join('');
}

/**
 * Runs the spec against a connected SDK client.
 * `client` needs `listTools({cursor})` and `callTool({name, arguments})`.
 */
export async function runSpec(report, client, spec) {
  const tools = new Map();
  let cursor;
  do {
    const page = await client.listTools(cursor ? { cursor } : undefined);
    for (const tool of page.tools) tools.set(tool.name, tool);
    cursor = page.nextCursor;
  } while (cursor);
  const listed = JSON.stringify([...tools.keys()].sort());
  for (const name of spec.present ?? []) report.check(tools.has(name), `tool ${name} listed`, `listed: ${listed}`);
  for (const name of spec.absent ?? []) report.check(!tools.has(name), `tool ${name} hidden`, 'it is listed');
  for (const [name, description] of Object.entries(spec.descriptions ?? {})) {
    const actual = tools.get(name)?.description;
    report.check(actual === description, `tool ${name} description`, `got ${JSON.stringify(actual)}`);
  }
  for (const call of spec.calls ?? []) await runCall(report, client, call);
}

async function runCall(report, client, call) {
  const args = call.arguments ?? {};
  const what = `call ${call.tool}(${JSON.stringify(args)})`;
  let result;
  try {
    result = await client.callTool({ name: call.tool, arguments: args });
  } catch (error) {
    if (call.rejected) report.check(true, `${what} rejected`);
    else report.check(false, what, `error: ${error?.message ?? error}`);
    return;
  }
  const text = resultText(result);
  if (call.rejected) {
    report.check(result.isError === true, `${what} rejected`, `succeeded with ${JSON.stringify(text)}`);
  } else if (result.isError) {
    report.check(false, what, `isError result: ${JSON.stringify(text)}`);
  } else if ('text' in call) {
    report.check(text === call.text, `${what} == ${JSON.stringify(call.text)}`, `got ${JSON.stringify(text)}`);
  } else if ('contains' in call) {
    report.check(text.includes(call.contains), `${what} contains ${JSON.stringify(call.contains)}`, `got ${JSON.stringify(text)}`);
  } else {
    report.check(true, what);
  }
}

/** Runs `body` and maps any thrown error to a FAIL line and exit status 2. */
export async function main(label, body) {
  try {
    process.exitCode = await body();
  } catch (error) {
    console.log(`[${label}] FAIL could not complete the session: ${error?.stack ?? error}`);
    process.exitCode = 2;
  }
}
