// Drives sbx's Daytona volume endpoints with the official Daytona
// TypeScript SDK (flow 3, the volume half): get-or-create by name, list,
// mount at sandbox create, data that outlives a sandbox, delete refused
// while mounted, tenant isolation. Run by e2e/volume_test.go.
//
// Environment: SBX_API_URL, SBX_API_KEY, SBX_OTHER_KEY, SBX_IMAGE.
'use strict';

const { Daytona, DaytonaNotFoundError, DaytonaConflictError } = require('@daytonaio/sdk');

const apiUrl = process.env.SBX_API_URL;
const image = process.env.SBX_IMAGE;
let step = '';
function begin(name) {
  step = name;
  console.log(name);
}
function check(cond, what, got) {
  if (!cond) throw new Error(`${step}: ${what}${got === undefined ? '' : `; got ${JSON.stringify(got)}`}`);
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

async function main() {
  const daytona = new Daytona({ apiKey: process.env.SBX_API_KEY, apiUrl, target: 'local' });
  const other = new Daytona({ apiKey: process.env.SBX_OTHER_KEY, apiUrl, target: 'local' });
  const made = [];
  try {
    begin('volume: get by name, creating it');
    await rejects(daytona.volume.get('dt-vol'), DaytonaNotFoundError, 'get of a missing volume');
    const vol = await daytona.volume.get('dt-vol', true);
    check(vol.name === 'dt-vol' && vol.state === 'ready' && vol.id, 'created volume', vol);
    check(typeof vol.createdAt === 'string' && vol.createdAt.endsWith('Z'), 'ISO createdAt', vol.createdAt);
    const again = await daytona.volume.get('dt-vol');
    check(again.id === vol.id, 'get by name finds it', again);
    const list = await daytona.volume.list();
    check(list.some((v) => v.id === vol.id), 'listed', list);
    await rejects(other.volume.get('dt-vol'), DaytonaNotFoundError, "another tenant's volume");

    begin('volume: mounted at create');
    const a = await daytona.create({ snapshot: image, volumes: [{ volumeId: vol.id, mountPath: '/data' }] }, { timeout: 120 });
    made.push(a);
    check(a.volumes.length === 1 && a.volumes[0].volumeId === vol.id && a.volumes[0].mountPath === '/data', 'sandbox volumes', a.volumes);
    let r = await a.process.executeCommand('mkdir -p /data/sub && echo kept > /data/sub/f && cat /data/sub/f');
    check(r.exitCode === 0 && r.result === 'kept\n', 'write to the volume', r);
    await rejects(daytona.volume.delete(vol), DaytonaConflictError, 'delete while mounted');
    await rejects(
      other.create({ snapshot: image, volumes: [{ volumeId: vol.id, mountPath: '/data' }] }),
      DaytonaNotFoundError,
      "another tenant mounts the volume",
    );

    begin('volume: outlives the sandbox');
    await a.delete();
    made.pop();
    const b = await daytona.create({ snapshot: image, volumes: [{ volumeId: vol.id, mountPath: '/mnt', subpath: 'sub' }] }, { timeout: 120 });
    made.push(b);
    r = await b.process.executeCommand('cat /mnt/f');
    check(r.exitCode === 0 && r.result === 'kept\n', 'read through a subpath after the writer is gone', r);
    await b.delete();
    made.pop();

    begin('volume: delete');
    await daytona.volume.delete(vol);
    await rejects(daytona.volume.get('dt-vol'), DaytonaNotFoundError, 'get after delete');
    begin('done');
  } finally {
    for (const s of made) await s.delete().catch(() => {});
    await daytona[Symbol.asyncDispose]();
    await other[Symbol.asyncDispose]();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`FAIL ${e.stack || e}`);
    process.exit(1);
  },
);
