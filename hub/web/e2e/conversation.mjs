// What the browser scripts (flows.mjs, firefox.mjs, bench.mjs) share: their
// environment, and the conversation with the Rust side that runs them: a
// script writes `need <what>` on stdout and waits for one line back
// (`done <detail>`), and reports each step as `ok <step>`.
import { createInterface } from 'node:readline';

// The environment variable `name`; throws when it is not set.
export const env = (name) => {
  const v = process.env[name];
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

// Ask the Rust side for `what`; resolves to the detail of its `done` line.
export async function need(what) {
  process.stdout.write(`need ${what}\n`);
  const { value, done } = await lines.next();
  if (done || !value.startsWith('done')) throw new Error(`no answer to ${what}: ${value}`);
  return value.slice(5);
}

// Report a step that passed.
export const step = (name) => process.stdout.write(`ok ${name}\n`);

// Fail the flows with `what` unless `cond` holds.
export function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}
