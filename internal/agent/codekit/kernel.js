// sbx's JavaScript context kernel: runs code sent by sbx-agent in one
// persistent global scope (top-level let/const/function survive between
// runs, as in Node's REPL), one run at a time.
//
// The protocol is kernel.py's: fd 3 commands, fd 4 answers, one JSON object
// per line; {"type":"ready"} first; {"type":"run","id","code","env"} is
// answered by {"type":"done","id","code","error","result"} after the marker
// (SBX_KERNEL_MARKER) has been written to stdout and stderr. A run's value
// is its completion value, awaited if it is a promise. SIGINT interrupts
// synchronous code (vm's breakOnSigint) and is ignored between runs.
'use strict';

const fs = require('fs');
const net = require('net');
const path = require('path');
const util = require('util');
const vm = require('vm');
const { createRequire } = require('module');

const MARKER = process.env.SBX_KERNEL_MARKER || '';
delete process.env.SBX_KERNEL_MARKER;
const MAX_RESULT = 256 << 10;

process.on('SIGINT', () => {}); // between runs; breakOnSigint takes over during one
// Code in the context requires modules as a script in the cwd would.
globalThis.require = createRequire(path.join(process.cwd(), '[sbx-context]'));
globalThis.module = { exports: {} };
globalThis.exports = globalThis.module.exports;
globalThis.__filename = path.join(process.cwd(), '[sbx-context]');
globalThis.__dirname = process.cwd();

function send(msg) {
  fs.writeSync(4, JSON.stringify(msg) + '\n');
}

function errorOf(e, interrupted) {
  if (interrupted) {
    return { name: 'KeyboardInterrupt', value: 'interrupted', traceback: '' };
  }
  if (e instanceof Error || (e && typeof e === 'object' && 'stack' in e)) {
    return { name: String(e.name || 'Error'), value: String(e.message || ''), traceback: String(e.stack || '') };
  }
  return { name: 'Error', value: util.inspect(e), traceback: 'Uncaught ' + util.inspect(e) };
}

function show(v) {
  let s = typeof v === 'string' ? util.inspect(v) : util.inspect(v, { depth: 4 });
  if (s.length > MAX_RESULT) s = s.slice(0, MAX_RESULT) + '...';
  return s;
}

function runScript(code, n) {
  const opts = { filename: `<cell-${n}>`, breakOnSigint: true };
  try {
    return vm.runInThisContext(code, opts);
  } catch (e) {
    if (!(e instanceof SyntaxError) || !/await is only valid/.test(e.message)) throw e;
  }
  // Top-level await: run as an async function, an expression first (its
  // value is the run's), else statements (their declarations stay local).
  try {
    return vm.runInThisContext(`(async () => (\n${code}\n))()`, opts);
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
  }
  return vm.runInThisContext(`(async () => {\n${code}\n})()`, opts);
}

async function run(cmd) {
  const n = cmd.id || 0;
  const saved = {};
  for (const [k, v] of Object.entries(cmd.env || {})) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
  let code = 0, error = null, result = null;
  try {
    let v = runScript(cmd.code || '', n);
    if (v && typeof v.then === 'function') v = await v;
    if (v !== undefined) result = show(v);
  } catch (e) {
    const interrupted = e && e.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED';
    code = interrupted ? 130 : 1;
    error = errorOf(e, interrupted);
  }
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  // Pipes are written synchronously on Linux: the marker comes after
  // everything the run printed.
  for (const fd of [1, 2]) {
    try { fs.writeSync(fd, MARKER); } catch (e) { /* closed by the code */ }
  }
  send({ type: 'done', id: n, code, error, result });
}

let queue = Promise.resolve();
let buf = '';
// A libuv pipe handle, not fs.createReadStream: a blocking read in the
// thread pool would keep process.exit waiting for the next command.
const cmds = new net.Socket({ fd: 3, readable: true, writable: false });
cmds.setEncoding('utf8');
cmds.on('data', (chunk) => {
  buf += chunk;
  let i;
  while ((i = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    let cmd;
    try { cmd = JSON.parse(line); } catch (e) { continue; }
    if (cmd.type === 'run') queue = queue.then(() => run(cmd));
  }
});
cmds.on('end', () => process.exit(0));
process.on('uncaughtException', (e) => {
  // A callback of an earlier run threw: report it on stderr, keep going.
  try { fs.writeSync(2, 'Uncaught ' + (e && e.stack ? e.stack : util.inspect(e)) + '\n'); } catch (_) { /* ignore */ }
});
process.on('unhandledRejection', (e) => {
  try { fs.writeSync(2, 'Unhandled rejection ' + (e && e.stack ? e.stack : util.inspect(e)) + '\n'); } catch (_) { /* ignore */ }
});
send({ type: 'ready', pid: process.pid, version: process.version });
