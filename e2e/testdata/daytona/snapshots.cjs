// Drives sbx's Daytona snapshots (sbx templates) with the official Daytona
// TypeScript SDK: a snapshot from an image name, one from an Image
// definition (a Dockerfile built layer by layer, logs streamed: the SDK
// streams them once a poll, every second, sees the build running), a sandbox
// created from it, delete refused while in use, list, and a failing build.
// Run by e2e/template_test.go. Environment: SBX_API_URL, SBX_API_KEY,
// SBX_IMAGE (a busybox image).
'use strict';

const { Daytona, DaytonaError, Image } = require('@daytonaio/sdk');

const image = process.env.SBX_IMAGE;
let step = '';
function begin(name) {
  step = name;
  console.log(name);
}
function check(cond, what, got) {
  if (!cond) {
    throw new Error(`${step}: ${what}${got === undefined ? '' : `; got ${JSON.stringify(got)}`}`);
  }
}

async function main() {
  const daytona = new Daytona({ apiUrl: process.env.SBX_API_URL, apiKey: process.env.SBX_API_KEY, target: 'us' });

  begin('snapshot from an image name');
  const plain = await daytona.snapshot.create({ name: 'dt-plain', image }, { timeout: 60 });
  check(plain.state === 'active', 'active', plain.state);
  check(plain.imageName === image, 'imageName', plain.imageName);

  begin('snapshot from an Image definition, logs streamed');
  const logs = [];
  const def = Image.base(image)
    .runCommands('echo built > /built', 'sleep 2; echo from-the-build') // long enough for the SDK to see it building
    .env({ MODE: 'daytona' })
    .workdir('/srv');
  const snap = await daytona.snapshot.create({ name: 'dt-built', image: def }, { onLogs: (l) => logs.push(l), timeout: 120 });
  check(snap.state === 'active', 'active', snap.state);
  const text = logs.join('\n');
  check(text.includes('from-the-build'), 'the build output in the streamed logs', text);

  begin('get and list');
  const got = await daytona.snapshot.get('dt-built');
  check(got.id === snap.id && got.name === 'dt-built', 'get by name', got);
  const page = await daytona.snapshot.list(1, 10);
  check(page.total >= 2 && page.items.some((s) => s.name === 'dt-plain'), 'list', page);

  begin('a sandbox from the snapshot');
  const sb = await daytona.create({ snapshot: 'dt-built' }, { timeout: 60 });
  check(sb.snapshot === 'dt-built', 'the sandbox names its snapshot', sb.snapshot);
  const res = await sb.process.executeCommand('cat /built; echo $MODE; pwd');
  check(res.exitCode === 0, 'exit code', res);
  check(res.result.trim() === 'built\ndaytona\n/srv', 'files, env and workdir of the build', res.result);

  begin('delete refused while in use');
  let refused = false;
  try {
    await daytona.snapshot.delete(got);
  } catch (e) {
    refused = e instanceof DaytonaError;
  }
  check(refused, 'a DaytonaError');
  await daytona.delete(sb);
  await daytona.snapshot.delete(got);
  await daytona.snapshot.delete(plain);

  begin('a failing build');
  let failed = '';
  try {
    await daytona.snapshot.create({ name: 'dt-bad', image: Image.base(image).runCommands('exit 3') }, { timeout: 60 });
  } catch (e) {
    failed = e.message;
  }
  check(failed.includes('build_failed'), 'build_failed in the error', failed);
  await daytona.snapshot.delete('dt-bad');
  console.log('ok');
}

main().catch((e) => {
  console.error(e.stack || e.message);
  process.exit(1);
});
