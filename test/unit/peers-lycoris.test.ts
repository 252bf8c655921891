/**
 * LoHa / LoKr (kohya-style LyCORIS files), VeRA and DoRA analysed from their structure, against
 * numpy forming ΔW explicitly (test/fixtures/peers/lycoris_gen.py).
 */
import { test, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Engine } from '../../src/core/engine/ort';
import { openAdapter, openStore } from '../../src/core/formats/open';
import { analyzeAdapter } from '../../src/core/analysis/lora';
import { analyzeDora, faceSplit, khatriRao, productSpectrum, StructuredModuleReport } from '../../src/core/analysis/lycoris';
import { mat, matmul } from '../../src/core/linalg/dense';
import { encodeSafetensors } from '../../src/core/formats/safetensors';
import { FormatError } from '../../src/core/formats/errors';
import { singularValues } from '../../src/core/linalg/decomp';

const FIX = path.resolve(__dirname, '../../../test/fixtures/peers');
const CLI = path.resolve(__dirname, '../../src/core/cli.js');
const EXP: Record<string, { type?: string; scale?: number; sigma: number[]; fro: number; [k: string]: unknown }> = JSON.parse(fs.readFileSync(path.join(FIX, 'lycoris', 'expected.json'), 'utf8'));
const engine = new Engine();
after(() => engine.dispose());

function assertSigma(got: number[], want: number[], what: string): void {
  const s1 = want[0];
  const nz = want.filter((x) => x > 1e-9 * s1);
  assert.ok(got.length >= nz.length, `${what}: ${got.length} σ, numpy has ${nz.length} non-zero`);
  for (let i = 0; i < nz.length; i++) assert.ok(Math.abs(got[i] - nz[i]) <= 1e-6 * s1, `${what} σ${i}: ${got[i]} vs ${nz[i]}`);
  for (let i = nz.length; i < got.length; i++) assert.ok(got[i] <= 1e-6 * s1, `${what}: σ${i} = ${got[i]} should be 0`);
}

test('identities: (X1·Y1)⊙(X2·Y2) = (X1•X2)(Y1∗Y2); productSpectrum = σ of the explicit product', async () => {
  const X1 = Float64Array.from({ length: 15 }, (_, i) => Math.sin(i + 1)), Y1 = Float64Array.from({ length: 12 }, (_, i) => Math.cos(2 * i));
  const X2 = Float64Array.from({ length: 10 }, (_, i) => (i % 3) - 1.2), Y2 = Float64Array.from({ length: 8 }, (_, i) => i / 7 - 0.4);
  // X1 5×3, Y1 3×4, X2 5×2, Y2 2×4
  const h1 = matmul(mat(5, 3, X1), mat(3, 4, Y1)), h2 = matmul(mat(5, 2, X2), mat(2, 4, Y2));
  const P = faceSplit(X1, X2, 5, 3, 2), Q = khatriRao(Y1, Y2, 3, 2, 4);
  const pq = matmul(mat(5, 6, P), mat(6, 4, Q));
  for (let i = 0; i < 20; i++) assert.ok(Math.abs(pq.data[i] - h1.data[i] * h2.data[i]) < 1e-12);
  // rank-deficient P (5 rows, R = 6): the symmetric-root route still gives the exact σ.
  const s = await productSpectrum(engine, P, 5, 6, Q, 4);
  const ref = singularValues(pq);
  for (let i = 0; i < 4; i++) assert.ok(Math.abs(s[i] - ref[i]) < 1e-9 * ref[0]);
});

test('kohya-style LyCORIS file: LoHa and LoKr rows in analyze with numpy spectra; CP core listed with an error', async () => {
  const a = openAdapter(path.join(FIX, 'lycoris', 'mixed.safetensors'));
  try {
    assert.equal(a.format, 'kohya');
    assert.equal(a.modules.length, 1, 'the plain LoRA pair');
    assert.equal(a.structured?.length, 6);
    const r = await analyzeAdapter(a, { engine });
    assert.equal(r.modules.length, 7);
    for (const [name, e] of Object.entries(EXP)) {
      if (name.includes(':')) continue; // vera:, dora:, peft_*: are checked below
      const row = r.modules.find((m) => m.name === name) as StructuredModuleReport | undefined;
      assert.ok(row, `row for ${name}`);
      assert.ok(!row.error, `${name}: ${row.error}`);
      assertSigma(row.sigma, e.sigma, name);
      assert.ok(Math.abs(row.fro - e.fro) <= 1e-6 * e.fro, `${name} fro`);
      assert.equal(row.outFeatures * row.inFeatures, (e.shape as number[])[0] * (e.shape as number[])[1]);
      if (e.type !== 'lora') {
        assert.equal(row.structure.type, e.type);
        assert.equal(row.scale, e.scale, `${name} scale`);
      }
    }
    const cp = r.modules.find((m) => m.name.endsWith('proj_in'))!;
    assert.match(cp.error ?? '', /CP\/Tucker/);
    assert.ok(a.warnings.some((w) => /CP\/Tucker/.test(w)));
    assert.ok(!a.warnings.some((w) => /are not analysed/.test(w)), 'LoHa/LoKr tensors are no longer reported as unanalysed');
    assert.ok(a.summary.targetModules.includes('to_q'));
  } finally {
    a.store.close();
  }
});

test('a LoHa-only file opens (no lora_up/down pairs) and the CLI analyze --json lists it', () => {
  const f = path.join(FIX, 'lycoris', 'loha_only.safetensors');
  const a = openAdapter(f);
  try {
    assert.equal(a.modules.length, 0);
    assert.equal(a.structured?.length, 1);
    assert.equal(a.summary.rank, 4);
  } finally {
    a.store.close();
  }
  const r = spawnSync(process.execPath, [CLI, 'analyze', f, '--json'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  const name = Object.keys(EXP).find((k) => k.endsWith('attn1_to_q'))!;
  assert.equal(j.modules.length, 1);
  assert.equal(j.modules[0].structure.type, 'loha');
  assertSigma(j.modules[0].sigma, EXP[name].sigma, 'cli loha');
});

test('malformed LyCORIS modules are one clear FormatError naming the file', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-lyco-'));
  try {
    const f32 = (n: number) => new Uint8Array(new Float32Array(n).buffer);
    const bad = path.join(dir, 'bad.safetensors');
    fs.writeFileSync(bad, encodeSafetensors([
      { name: 'm.hada_w1_a', dtype: 'F32', shape: [8, 2], data: f32(16) }, { name: 'm.hada_w1_b', dtype: 'F32', shape: [2, 6], data: f32(12) },
      { name: 'm.hada_w2_a', dtype: 'F32', shape: [8, 2], data: f32(16) }, { name: 'm.hada_w2_b', dtype: 'F32', shape: [3, 6], data: f32(18) },
    ], {}));
    assert.throws(() => openAdapter(bad), (e: unknown) => e instanceof FormatError && /bad\.safetensors/.test((e as Error).message) && /ranks disagree/.test((e as Error).message));
    const miss = path.join(dir, 'miss.safetensors');
    fs.writeFileSync(miss, encodeSafetensors([{ name: 'm.lokr_w1', dtype: 'F32', shape: [2, 2], data: f32(4) }], {}));
    assert.throws(() => openAdapter(miss), (e: unknown) => e instanceof FormatError && /miss\.safetensors/.test((e as Error).message) && /LoKr module "m" has neither .*lokr_w2/.test((e as Error).message));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('VeRA: shared projections with per-module λ scalings, spectra vs numpy', async () => {
  const a = openAdapter(path.join(FIX, 'vera'));
  try {
    assert.equal(a.summary.peftType, 'VERA');
    assert.equal(a.structured?.length, 2);
    const r = await analyzeAdapter(a, { engine });
    for (const m of r.modules as StructuredModuleReport[]) {
      const e = EXP[`vera:${m.name}`];
      assert.ok(e, m.name);
      assert.equal(m.structure.type, 'vera');
      assertSigma(m.sigma, e.sigma, m.name);
      assert.ok(Math.abs(m.fro - e.fro) <= 1e-6 * e.fro);
    }
  } finally {
    a.store.close();
  }
});

for (const typ of ['loha', 'lokr']) {
  test(`PEFT ${typ.toUpperCase()} folder: scale alpha/r from the config (rank_pattern), spectra vs numpy`, async () => {
    const a = openAdapter(path.join(FIX, `peft_${typ}`));
    try {
      assert.equal(a.structured?.length, 2);
      const r = await analyzeAdapter(a, { engine });
      for (const m of r.modules as StructuredModuleReport[]) {
        const e = EXP[`peft_${typ}:${m.name}`];
        assert.ok(e, m.name);
        assert.equal(m.structure.type, typ);
        assert.equal(m.scale, e.scale);
        assertSigma(m.sigma, e.sigma, m.name);
        assert.ok(Math.abs(m.fro - e.fro) <= 1e-6 * e.fro);
      }
    } finally {
      a.store.close();
    }
  });
}

test('DoRA: magnitude vs base row norms, direction change and the true ΔW vs numpy', async () => {
  const a = openAdapter(path.join(FIX, 'dora', 'adapter'));
  const base = openStore(path.join(FIX, 'dora', 'base.safetensors'));
  try {
    const m = a.modules[0];
    assert.ok(m.magnitude);
    const d = await analyzeDora(engine, a, m, base, 4);
    const e = EXP[`dora:${m.name}`] as unknown as Record<string, number[] | number>;
    const close = (x: number[], y: number[], tol: number, what: string) => x.forEach((v, i) => assert.ok(Math.abs(v - y[i]) <= tol * Math.max(1, Math.abs(y[i])), `${what}[${i}] ${v} vs ${y[i]}`));
    close(d.normBefore, e.normBefore as number[], 1e-5, 'normBefore');
    close(d.normMerged, e.normMerged as number[], 1e-5, 'normMerged');
    close(d.magnitude, e.magnitude as number[], 1e-6, 'magnitude');
    close(d.directionCos, e.cos as number[], 1e-5, 'cos');
    assert.ok(Math.abs(d.trueDelta.fro - (e.trueFro as number)) <= 1e-5 * (e.trueFro as number));
    assert.ok(Math.abs(d.trueDelta.loraFro - (e.loraFro as number)) <= 1e-5 * (e.loraFro as number));
    assert.ok(Math.abs(d.trueDelta.relDiffFromLora - (e.relDiff as number)) <= 1e-4);
    close(d.trueDelta.sigma, e.trueSigma as number[], 1e-4, 'true σ');
    assert.ok(d.summary.maxAngleDeg > 0);
  } finally {
    a.store.close();
    base.close();
  }
});

test('CLI dora: --json equals the numpy DoRA reference; refusals exit ≠ 0 with one line', () => {
  const r = spawnSync(process.execPath, [CLI, 'dora', path.join(FIX, 'dora', 'adapter'), '--base', path.join(FIX, 'dora', 'base.safetensors'), '--k', '4', '--json'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { modules: { name: string; normBefore: number[]; magnitude: number[]; directionCos: number[]; trueDelta: { fro: number; sigma: number[]; loraFro: number; relDiffFromLora: number } }[] };
  assert.equal(j.modules.length, 1);
  const d = j.modules[0];
  const e = EXP[`dora:${d.name}`] as unknown as Record<string, number[] | number>;
  d.normBefore.forEach((v, i) => assert.ok(Math.abs(v - (e.normBefore as number[])[i]) <= 1e-5 * Math.max(1, (e.normBefore as number[])[i])));
  d.directionCos.forEach((v, i) => assert.ok(Math.abs(v - (e.cos as number[])[i]) <= 1e-5));
  assert.ok(Math.abs(d.trueDelta.fro - (e.trueFro as number)) <= 1e-5 * (e.trueFro as number));
  d.trueDelta.sigma.forEach((v, i) => assert.ok(Math.abs(v - (e.trueSigma as number[])[i]) <= 1e-4 * Math.max(1, (e.trueSigma as number[])[i])));
  // no DoRA modules: one error line naming the adapter
  const noDora = spawnSync(process.execPath, [CLI, 'dora', path.join(FIX, 'peft_loha'), '--base', path.join(FIX, 'dora', 'base.safetensors')], { encoding: 'utf8' });
  assert.equal(noDora.status, 1, noDora.stderr);
  assert.equal(noDora.stderr.trim().split('\n').length, 1);
  assert.match(noDora.stderr, /peft_loha: has no DoRA modules/);
  // no --base: usage error
  assert.equal(spawnSync(process.execPath, [CLI, 'dora', path.join(FIX, 'dora', 'adapter')], { encoding: 'utf8' }).status, 2);
});
