/**
 * Fleets: `lora-lens analyze DIR --recursive --jsonl` streams one record per adapter under DIR;
 * a broken or non-adapter file is an error record with its path and the run goes on; parallel
 * (worker threads, tsc build and esbuild bundle) and serial runs give the same records; numbers
 * agree with numpy (test/fixtures/doctor/gen_doctor.py healthy metrics). The single-adapter
 * analyze flags (--json, --csv, --method) keep working after the move to src/core/cli/analyze.ts.
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { assertClose } from './tolerance';

const repoRoot = path.resolve(__dirname, '../../..');
const DOC = path.join(repoRoot, 'test/fixtures/doctor');
const SIM = path.join(repoRoot, 'test/fixtures/similarity');
const CLI = path.join(repoRoot, 'out/src/core/cli.js');
const BUNDLE = path.join(repoRoot, 'dist/cli.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-fleet-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const metrics = JSON.parse(fs.readFileSync(path.join(DOC, 'expected.json'), 'utf8')).healthy.metrics as { sigma1: number };

function copyDir(src: string, dst: string): void {
  fs.mkdirSync(dst, { recursive: true });
  for (const f of fs.readdirSync(src)) fs.copyFileSync(path.join(src, f), path.join(dst, f));
}

const fleet = path.join(tmp, 'fleet');
copyDir(path.join(DOC, 'healthy'), path.join(fleet, 'a-healthy'));
copyDir(path.join(DOC, 'untrained'), path.join(fleet, 'b-untrained'));
copyDir(path.join(DOC, 'nonfinite'), path.join(fleet, 'team', 'c-nonfinite'));
copyDir(path.join(SIM, 'a3'), path.join(fleet, 'team', 'deep', 'd-mlx'));
fs.mkdirSync(path.join(fleet, 'e-broken'));
fs.writeFileSync(path.join(fleet, 'e-broken', 'lora.safetensors'), Buffer.from([0x10, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0x22]));
copyDir(path.join(DOC, 'base'), path.join(fleet, 'f-model'));

type Rec = Record<string, unknown> & { path: string; ok: boolean };
function run(cli: string, extra: string[] = []): Rec[] {
  const p = spawnSync(process.execPath, [cli, 'analyze', fleet, '--recursive', '--jsonl', ...extra], { encoding: 'utf8' });
  assert.equal(p.status, 0, p.stderr);
  return p.stdout.trim().split('\n').map((l) => JSON.parse(l) as Rec);
}
const strip = (rs: Rec[]): Rec[] => rs.map(({ ms: _ms, ...r }) => r as Rec);

test('analyze --recursive --jsonl: one record per adapter, errors as records, numbers vs numpy', () => {
  const recs = run(CLI, ['--jobs', '2']);
  const by = (s: string): Rec => recs.find((r) => r.path.includes(s))!;
  assert.equal(recs.length, 6, recs.map((r) => r.path).join('\n'));
  const h = by('a-healthy');
  assert.equal(h.ok, true);
  assert.equal(h.format, 'peft'); assert.equal(h.base, 'tiny/base'); assert.equal(h.r, 8); assert.equal(h.scale, 2);
  assert.equal(h.findings, 0); assert.equal(h.modules, 6);
  assertClose(h.sigma1 as number, metrics.sigma1, { rel: 1e-9 }, 'σ1 vs numpy');
  for (const k of ['effectiveRank', 'gap', 'stableRank', 'bytes']) assert.equal(typeof h[k], 'number', k);
  const u = by('b-untrained');
  assert.equal(u.errors, 1); assert.equal(u.findings, 7); assert.equal(u.sigma1, 0);
  const n = by('c-nonfinite');
  assert.equal(n.ok, true); assert.equal(n.moduleErrors, 1); assert.ok((n.errors as number) >= 1);
  const m = by('d-mlx');
  assert.equal(m.format, 'mlx'); assert.equal(m.scale, 5);
  const b = by('e-broken');
  assert.equal(b.ok, false); assert.match(b.error as string, /lora\.safetensors/);
  const f = by('f-model');
  assert.equal(f.ok, false); assert.match(f.error as string, /model\.safetensors.*LoRA/);
  // Serial in-process run and the esbuild bundle's worker threads give the same records.
  assert.deepEqual(strip(run(CLI, ['--jobs', '1'])), strip(recs));
  if (fs.existsSync(BUNDLE)) assert.deepEqual(strip(run(BUNDLE, ['--jobs', '2'])), strip(recs));
});

test('analyze keeps its single-adapter flags (--json, --csv, --method) and usage errors', () => {
  const a = path.join(DOC, 'healthy');
  const j = spawnSync(process.execPath, [CLI, 'analyze', a, '--json', '--method', 'householder'], { encoding: 'utf8' });
  assert.equal(j.status, 0, j.stderr);
  const rep = JSON.parse(j.stdout);
  assert.equal(rep.modules.length, 6);
  assert.ok(rep.modules.every((m: { method: string }) => m.method === 'householder'));
  const c = spawnSync(process.execPath, [CLI, 'analyze', a, '--csv'], { encoding: 'utf8' });
  assert.match(c.stdout, /^name,group,kind,rank/);
  const t = spawnSync(process.execPath, [CLI, 'analyze', a], { encoding: 'utf8' });
  assert.match(t.stdout, /healthy \(peft\): 6 modules/);
  const one = spawnSync(process.execPath, [CLI, 'analyze', a, '--jsonl'], { encoding: 'utf8' });
  assert.equal(one.stdout.trim().split('\n').length, 1);
  assert.equal(JSON.parse(one.stdout).r, 8);
  assert.equal(spawnSync(process.execPath, [CLI, 'analyze', a, '--method', 'qr'], { encoding: 'utf8' }).status, 2);
  assert.equal(spawnSync(process.execPath, [CLI, 'analyze', path.join(fleet, 'e-broken', 'lora.safetensors'), '--recursive'], { encoding: 'utf8' }).status, 1);
});
