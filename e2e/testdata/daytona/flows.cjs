// Drives `sbx serve` with the official Daytona TypeScript SDK
// (@daytonaio/sdk, found through NODE_PATH) and asserts what it gets back.
// Run by e2e/daytona_test.go; exits non-zero on the first failed check.
//
// Environment: SBX_API_URL (http://host:port/api), SBX_API_KEY, SBX_OTHER_KEY
// (a key of another tenant), SBX_IMAGE (an image with python3 and matplotlib).
'use strict';

const {
  Daytona,
  DaytonaError,
  DaytonaNotFoundError,
  DaytonaTimeoutError,
  DaytonaFileNotFoundError,
  DaytonaValidationError,
} = require('@daytonaio/sdk');

const apiUrl = process.env.SBX_API_URL;
const image = process.env.SBX_IMAGE;

let step = '';
const t0 = Date.now();
function begin(name) {
  step = name;
  console.log(`[${((Date.now() - t0) / 1000).toFixed(2)}s] ${name}`);
}
function check(cond, what, got) {
  if (!cond) {
    throw new Error(`${step}: ${what}${got === undefined ? '' : `; got ${JSON.stringify(got)}`}`);
  }
}
async function rejects(promise, cls, what) {
  try {
    await promise;
  } catch (e) {
    check(e instanceof cls, `${what}: want ${cls.name}`, `${e.constructor.name}: ${e.message}`);
    return e;
  }
  check(false, `${what}: want ${cls.name}, got success`);
}
async function until(cond, what, ms = 10000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  check(false, `timed out waiting for ${what}`);
}

async function flow1(daytona) {
  begin('flow 1: create');
  const sb = await daytona.create(
    { snapshot: image, envVars: { FOO: 'bar' }, labels: { suite: 'daytona-e2e' } },
    { timeout: 120 },
  );
  check(sb.state === 'started', 'state started', sb.state);
  check(sb.labels['code-toolbox-language'] === 'python', 'language label kept', sb.labels);
  check(sb.labels.suite === 'daytona-e2e', 'labels kept', sb.labels);
  check(sb.env && sb.env.FOO === 'bar', 'env', sb.env);
  check(typeof sb.createdAt === 'string' && sb.createdAt.endsWith('Z'), 'ISO createdAt', sb.createdAt);
  check(sb.toolboxProxyUrl === apiUrl + '/toolbox', 'toolboxProxyUrl', sb.toolboxProxyUrl);

  begin('flow 1: executeCommand');
  let r = await sb.process.executeCommand('echo hi');
  check(r.exitCode === 0 && r.result === 'hi\n', 'echo hi', r);
  check(r.artifacts.stdout === 'hi\n', 'artifacts.stdout', r.artifacts);
  r = await sb.process.executeCommand('echo $FOO $X; pwd', '/tmp', { X: 'y' });
  check(r.result === 'bar y\n/tmp\n', 'env and cwd', r.result);
  r = await sb.process.executeCommand('echo out; echo err >&2; exit 3');
  check(r.exitCode === 3 && r.result.includes('out') && r.result.includes('err'), 'exit code, combined output', r);
  await rejects(sb.process.executeCommand('sleep 10', undefined, undefined, 1), DaytonaTimeoutError, 'timeout');

  begin('flow 1: codeRun with a matplotlib chart');
  r = await sb.process.codeRun(
    [
      'import matplotlib.pyplot as plt',
      'plt.plot([1, 2, 3], [4, 5, 6], label="s")',
      'plt.title("rising")',
      'plt.xlabel("x")',
      'plt.show()',
      'print("done")',
    ].join('\n'),
  );
  check(r.exitCode === 0, 'codeRun exit code', r);
  check(r.result.includes('done'), 'codeRun stdout', r.result);
  check(r.artifacts.charts.length === 1, 'one chart', r.artifacts.charts.length);
  const chart = r.artifacts.charts[0];
  check(chart.type === 'line' && chart.title === 'rising' && chart.x_label === 'x', 'chart description', {
    type: chart.type,
    title: chart.title,
    x_label: chart.x_label,
  });
  check(Buffer.from(chart.png, 'base64').subarray(0, 8).equals(Buffer.from('\x89PNG\r\n\x1a\n', 'latin1')), 'chart png');
  check(chart.elements.length === 1 && chart.elements[0].points.length === 3, 'chart elements', chart.elements);
  r = await sb.process.codeRun('import sys\nprint("argv", sys.argv[1:])\nsys.exit(4)', { argv: ['a', 'b'] });
  check(r.exitCode === 4 && r.result.includes("argv ['a', 'b']"), 'codeRun argv and exit code', r);

  begin('flow 1: codeRun in javascript and typescript sandboxes');
  for (const language of ['javascript', 'typescript']) {
    const js = await daytona.create({ snapshot: image, language }, { timeout: 120 });
    const code = language === 'typescript' ? 'const n: number = 21;\nconsole.log(n * 2, process.argv.slice(2).join(","));' : 'console.log(21 * 2, process.argv.slice(2).join(","));';
    const jr = await js.process.codeRun(code, { argv: ['x', 'y'] });
    check(jr.exitCode === 0 && jr.result.trim() === '42 x,y', `${language} codeRun`, jr);
    await js.delete();
  }

  begin('flow 1: info');
  check((await sb.getUserHomeDir()) === '/root', 'getUserHomeDir', await sb.getUserHomeDir());
  check((await sb.getWorkDir()).startsWith('/'), 'getWorkDir', await sb.getWorkDir());

  begin('flow 1: upload and download');
  await sb.fs.uploadFile(Buffer.from('hello file\n'), '/srv/up/a.txt');
  const big = Buffer.alloc(3 << 20);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
  await sb.fs.uploadFiles([
    { source: Buffer.from('second'), destination: '/srv/up/deep/b.txt' },
    { source: big, destination: '/srv/up/big.bin' },
  ]);
  let data = await sb.fs.downloadFile('/srv/up/a.txt');
  check(data.toString() === 'hello file\n', 'downloaded content', data.toString());
  const many = await sb.fs.downloadFiles([
    { source: '/srv/up/big.bin' },
    { source: '/srv/up/deep/b.txt' },
    { source: '/srv/up/missing.txt' },
  ]);
  check(many[0].result && Buffer.compare(many[0].result, big) === 0, 'big file round trip', many[0].error);
  check(many[1].result && many[1].result.toString() === 'second', 'nested file', many[1]);
  check(many[2].error && !many[2].result, 'missing file is an error', many[2]);
  await rejects(sb.fs.downloadFile('/srv/up/missing.txt'), DaytonaFileNotFoundError, 'download of a missing file');

  begin('flow 1: streams');
  const { Readable } = require('stream');
  await sb.fs.uploadFileStream(Readable.from([Buffer.from('str'), Buffer.from('eamed')]), '/srv/up/deep/s.txt');
  const rs = await sb.fs.downloadFileStream('/srv/up/deep/s.txt');
  let streamed = '';
  for await (const chunk of rs) streamed += chunk.toString();
  check(streamed === 'streamed', 'uploadFileStream + downloadFileStream', streamed);
  const deep = (await sb.fs.listFiles('/srv/up', { depth: 2 })).map((f) => f.name).sort();
  check(deep.includes('s.txt') && deep.includes('b.txt') && deep.includes('deep'), 'listFiles depth 2', deep);
  await sb.fs.deleteFile('/srv/up/deep/s.txt');

  begin('flow 1: file system');
  const names = (await sb.fs.listFiles('/srv/up')).map((f) => f.name).sort();
  check(JSON.stringify(names) === JSON.stringify(['a.txt', 'big.bin', 'deep']), 'listFiles', names);
  const info = await sb.fs.getFileDetails('/srv/up/a.txt');
  check(info.size === 11 && !info.isDir && info.mode === '-rw-r--r--' && info.permissions === '0644', 'getFileDetails', info);
  check((await sb.fs.getFileDetails('/srv/up/deep')).isDir, 'a directory is a directory');
  await rejects(sb.fs.getFileDetails('/srv/nope'), DaytonaFileNotFoundError, 'details of a missing file');
  await sb.fs.createFolder('/srv/made/sub', '750');
  check((await sb.fs.getFileDetails('/srv/made/sub')).permissions === '0750', 'createFolder mode');
  await sb.fs.moveFiles('/srv/up/deep/b.txt', '/srv/made/b.txt');
  check((await sb.fs.downloadFile('/srv/made/b.txt')).toString() === 'second', 'moveFiles');
  const found = await sb.fs.searchFiles('/srv', '*.txt');
  check(found.files.sort().join(',') === '/srv/made/b.txt,/srv/up/a.txt', 'searchFiles (names)', found);
  const matches = await sb.fs.findFiles('/srv/up', 'hello');
  check(matches.length === 1 && matches[0].file === '/srv/up/a.txt' && matches[0].line === 1, 'findFiles (contents)', matches);
  const rep = await sb.fs.replaceInFiles(['/srv/up/a.txt'], 'hello', 'bye');
  check(rep.length === 1 && rep[0].success, 'replaceInFiles', rep);
  check((await sb.fs.downloadFile('/srv/up/a.txt')).toString() === 'bye file\n', 'replaced content');
  await sb.fs.setFilePermissions('/srv/up/a.txt', { mode: '600' });
  check((await sb.fs.getFileDetails('/srv/up/a.txt')).permissions === '0600', 'setFilePermissions');
  await sb.fs.deleteFile('/srv/made', true);
  await rejects(sb.fs.getFileDetails('/srv/made'), DaytonaFileNotFoundError, 'deleted folder');

  begin('flow 1: get and list');
  const again = await daytona.get(sb.id);
  check(again.id === sb.id && again.state === 'started', 'get by id', again.state);
  check((await daytona.get(sb.name)).id === sb.id, 'get by name');
  await rejects(daytona.get('no-such-sandbox'), DaytonaNotFoundError, 'get of an unknown sandbox');
  const listed = [];
  for await (const s of daytona.list({ labels: { suite: 'daytona-e2e' } })) listed.push(s.id);
  check(listed.length === 1 && listed[0] === sb.id, 'list by label', listed);
  const none = [];
  for await (const s of daytona.list({ labels: { suite: 'other' } })) none.push(s.id);
  check(none.length === 0, 'list by another label', none);

  const second = await daytona.create({ snapshot: image, labels: { suite: 'daytona-e2e' } }, { timeout: 120 });
  const paged = [];
  for await (const s of daytona.list({ labels: { suite: 'daytona-e2e' }, limit: 1 })) paged.push(s.id);
  check(paged.length === 2 && paged.includes(sb.id) && paged.includes(second.id), 'list follows nextCursor', paged);
  await second.stop(60, true);
  const started = [];
  for await (const s of daytona.list({ labels: { suite: 'daytona-e2e' }, states: ['started'] })) started.push(s.id);
  check(started.length === 1 && started[0] === sb.id, 'list by state', started);
  await second.delete();
  const logs = await sb.process.getEntrypointLogs();
  check(typeof logs.output === 'string' && typeof logs.stdout === 'string', 'getEntrypointLogs', logs);

  begin('flow 1: another tenant sees nothing');
  const other = new Daytona({ apiKey: process.env.SBX_OTHER_KEY, apiUrl, target: 'local' });
  await rejects(other.get(sb.id), DaytonaNotFoundError, "another tenant's get");
  await rejects(new Daytona({ apiKey: 'sbx_wrong', apiUrl, target: 'local' }).get(sb.id), Error, 'a wrong key');
  await other[Symbol.asyncDispose]();

  begin('flow 1: Daytona\'s default intervals');
  check(sb.autoStopInterval === 15 && sb.autoArchiveInterval === 7 * 24 * 60 && sb.autoDeleteInterval === -1,
    'defaults 15 min / 7 days / never', [sb.autoStopInterval, sb.autoArchiveInterval, sb.autoDeleteInterval]);
  const e = await rejects(sb.archive(), DaytonaError, 'archive of a started sandbox');
  check(e.statusCode === 409, 'archive of a started sandbox answers 409', e.statusCode);

  begin('flow 1: create errors');
  await rejects(daytona.create({ snapshot: 'no/such:image' }), DaytonaNotFoundError, 'create from an unknown image');
  await rejects(
    daytona.create({ snapshot: image, volumes: [{ volumeId: 'v', mountPath: '/v' }] }),
    DaytonaNotFoundError,
    'create with an unknown volume',
  );
  return sb;
}

async function flow2(daytona, sb) {
  begin('flow 2: stop');
  await sb.fs.uploadFile(Buffer.from('kept'), '/srv/persist.txt');
  await sb.stop();
  check(sb.state === 'stopped', 'stopped', sb.state);
  check((await daytona.get(sb.id)).state === 'stopped', 'get says stopped');
  await rejects(sb.process.executeCommand('true'), Error, 'exec in a stopped sandbox');

  begin('flow 2: archive');
  await sb.archive();
  check((await daytona.get(sb.id)).state === 'archived', 'get says archived');

  begin('flow 2: start (restores the archive)');
  await sb.start();
  check(sb.state === 'started', 'started', sb.state);
  check((await sb.fs.downloadFile('/srv/persist.txt')).toString() === 'kept', 'files survive stop/start');
  check((await sb.process.executeCommand('echo $FOO')).result === 'bar\n', 'env survives stop/start');

  begin('flow 2: labels, intervals, resize');
  const labels = await sb.setLabels({ team: 'x' });
  check(JSON.stringify(labels) === JSON.stringify({ team: 'x' }), 'setLabels replaces', labels);
  check((await daytona.get(sb.id)).labels.team === 'x', 'labels stored');
  await sb.setAutostopInterval(30);
  await sb.setAutoArchiveInterval(60);
  await sb.setAutoDeleteInterval(-1);
  await sb.refreshActivity();
  const iv = await daytona.get(sb.id);
  check(iv.autoStopInterval === 30 && iv.autoArchiveInterval === 60 && iv.autoDeleteInterval === -1, 'intervals stored',
    [iv.autoStopInterval, iv.autoArchiveInterval, iv.autoDeleteInterval]);
  check(Date.now() - Date.parse(iv.lastActivityAt) < 60000, 'refreshActivity recorded', iv.lastActivityAt);
  await sb.resize({ cpu: 1, memory: 1 });
  check(sb.cpu === 1 && sb.memory === 1, 'resize', { cpu: sb.cpu, memory: sb.memory });
  // codeRun needs the language label, which setLabels replaced.
  await sb.setLabels({ team: 'x', 'code-toolbox-language': 'python' });
}

async function flow4(sb) {
  begin('flow 4: session');
  await sb.process.createSession('s1');
  await sb.process.executeSessionCommand('s1', { command: 'cd /srv && export GREETING=hey' });
  let r = await sb.process.executeSessionCommand('s1', { command: 'echo $GREETING $(pwd); echo oops >&2' });
  check(r.exitCode === 0 && r.stdout === 'hey /srv\n' && r.stderr === 'oops\n', 'state carries over', r);
  check(r.output.includes('hey /srv') && r.output.includes('oops'), 'combined output', r.output);
  r = await sb.process.executeSessionCommand('s1', { command: 'exit_code_test() { return 5; }; exit_code_test' });
  check(r.exitCode === 5, 'exit code of a session command', r);

  begin('flow 4: async command, followed logs');
  const cmd = await sb.process.executeSessionCommand('s1', {
    command: 'for i in 1 2 3; do echo line$i; echo err$i >&2; sleep 0.2; done',
    runAsync: true,
  });
  check(typeof cmd.cmdId === 'string' && cmd.cmdId !== '' && cmd.exitCode === undefined, 'cmdId', cmd);
  let out = '';
  let err = '';
  await sb.process.getSessionCommandLogs('s1', cmd.cmdId, (s) => (out += s), (s) => (err += s));
  check(out === 'line1\nline2\nline3\n', 'followed stdout', out);
  check(err === 'err1\nerr2\nerr3\n', 'followed stderr', err);
  const c = await sb.process.getSessionCommand('s1', cmd.cmdId);
  check(c.exitCode === 0 && c.command.startsWith('for i'), 'command ended', c);
  const logs = await sb.process.getSessionCommandLogs('s1', cmd.cmdId);
  check(logs.stdout === out && logs.stderr === err && logs.output.includes('line3'), 'logs', logs);

  begin('flow 4: input');
  const rd = await sb.process.executeSessionCommand('s1', { command: 'read x; echo got $x', runAsync: true });
  await sb.process.sendSessionCommandInput('s1', rd.cmdId, 'abc\n');
  await until(async () => (await sb.process.getSessionCommand('s1', rd.cmdId)).exitCode !== undefined, 'the read to end');
  check((await sb.process.getSessionCommandLogs('s1', rd.cmdId)).stdout === 'got abc\n', 'input reached the command');

  begin('flow 4: list and delete sessions');
  const sessions = await sb.process.listSessions();
  check(sessions.some((s) => s.sessionId === 's1'), 'listSessions', sessions);
  const s1 = await sb.process.getSession('s1');
  check(s1.commands.length === 5, 'getSession commands', s1.commands.length);
  await sb.process.deleteSession('s1');
  await rejects(sb.process.getSession('s1'), DaytonaNotFoundError, 'deleted session');

  begin('flow 4: PTY');
  let screen = '';
  const pty = await sb.process.createPty({
    id: 'p1',
    cols: 100,
    rows: 30,
    envs: { PTYVAR: 'zz' },
    onData: (d) => (screen += Buffer.from(d).toString()),
  });
  check(pty.isConnected(), 'PTY connected');
  await pty.sendInput('echo "$PTYVAR-ok"; stty size\n');
  await until(() => screen.includes('zz-ok') && screen.includes('30 100'), 'PTY output with its env and size');
  const resized = await pty.resize(120, 40);
  check(resized.cols === 120 && resized.rows === 40, 'resize', resized);
  await pty.sendInput('stty size\n');
  await until(() => screen.includes('40 120'), 'the new size');
  const ptys = await sb.process.listPtySessions();
  check(ptys.some((p) => p.id === 'p1' && p.active), 'listPtySessions', ptys);
  check((await sb.process.getPtySessionInfo('p1')).cols === 120, 'getPtySessionInfo');
  await pty.sendInput('exit 7\n');
  const res = await pty.wait();
  check(res.exitCode === 7, 'PTY exit code', res);

  begin('flow 4: PTY reconnect and kill');
  let screen2 = '';
  const p2 = await sb.process.createPty({ id: 'p2', onData: (d) => (screen2 += Buffer.from(d).toString()) });
  await p2.sendInput('echo first\n');
  await until(() => screen2.includes('first'), 'first output');
  await p2.disconnect();
  let screen3 = '';
  const p3 = await sb.process.connectPty('p2', { onData: (d) => (screen3 += Buffer.from(d).toString()) });
  await p3.sendInput('echo second\n');
  await until(() => screen3.includes('second'), 'output after reconnecting');
  check(screen3.includes('first'), 'the scrollback is replayed on reconnect');
  await p3.kill();
  const killed = await p3.wait();
  check(killed.exitCode !== 0, 'a killed PTY exits non-zero', killed);
}

// rawGet sends GET path to the daemon with Host host (the preview URL's:
// no wildcard DNS here) and resolves to {status, body}.
function rawGet(host, path, headers = {}) {
  const http = require('node:http');
  const api = new URL(apiUrl);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: api.hostname, port: api.port, path, headers: { ...headers, Host: host } },
      (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function flow5(sb) {
  begin('flow 5: preview links');
  await sb.process.executeCommand(
    "sh -c 'mkdir -p /tmp/www && echo hello-daytona > /tmp/www/index.html && " +
      "(python3 -m http.server 8123 --bind 127.0.0.1 --directory /tmp/www >/dev/null 2>&1 &)'",
  );
  const link = await sb.getPreviewLink(8123);
  check(link.url.startsWith(`http://8123-${sb.id}.`), 'host-form url', link);
  check(typeof link.token === 'string' && link.token.length === 32, 'token', link);
  const host = new URL(link.url).host;
  const tok = { 'X-Daytona-Preview-Token': link.token };
  await until(async () => (await rawGet(host, '/', tok)).status === 200, 'the server behind the preview', 15000);
  const page = await rawGet(host, '/', tok);
  check(page.body.includes('hello-daytona'), 'the page through the preview', page);
  check((await rawGet(host, '/')).status === 401, 'no token: 401');
  const q = await rawGet(host, `/?DAYTONA_SANDBOX_AUTH_KEY=${link.token}`);
  check(q.status === 307, 'the query token sets a cookie and redirects', q.status);

  begin('flow 5: signed preview url');
  const signed = await sb.getSignedPreviewUrl(8123, 120);
  check(signed.port === 8123 && signed.url.includes(signed.token), 'signed url', signed);
  const ok = await rawGet(host, '/', { 'X-Daytona-Preview-Token': signed.token });
  check(ok.status === 200, 'the signed token opens the port', ok);
  await sb.expireSignedPreviewUrl(8123, signed.token);
  const gone = await rawGet(host, '/', { 'X-Daytona-Preview-Token': signed.token });
  check(gone.status === 403, 'an expired signed token is refused', gone);
}

async function main() {
  const daytona = new Daytona({ apiKey: process.env.SBX_API_KEY, apiUrl, target: 'local' });
  let sb;
  try {
    sb = await flow1(daytona);
    await flow2(daytona, sb);
    await flow4(sb);
    await flow5(sb);
    begin('delete');
    await sb.delete();
    await rejects(daytona.get(sb.id), DaytonaNotFoundError, 'get after delete');
    sb = undefined;
    begin('done');
  } finally {
    if (sb) await sb.delete().catch(() => {});
    await daytona[Symbol.asyncDispose]();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`FAIL ${e.stack || e}`);
    process.exit(1);
  },
);
