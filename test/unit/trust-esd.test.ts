/**
 * Issue 8 item 4: ESD metrics against WeightWatcher's formulas in numpy (test/fixtures/trust/gen_esd.py):
 * fp64 matrix rank / entropy, alpha only on a full spectrum with ≥ 50 eigenvalues, log_norm from ‖W‖_F.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after } from 'node:test';
import { esdMetrics, frobeniusSquared } from '../../src/core/base/esd';
import { Engine } from '../../src/core/engine/ort';
import { relErr } from './tolerance';

interface C { sv: number[]; N: number; M: number; matrix_rank: number; entropy: number; frobeniusSq: number; log_norm: number; log_spectral_norm: number; stable_rank: number; fittable: boolean; rank_fp32_rule: number }
const FIX = path.resolve(__dirname, '../../../test/fixtures/trust');
const ref = JSON.parse(fs.readFileSync(path.join(FIX, 'esd.json'), 'utf8')) as Record<'graded' | 'delta16' | 'heavy', C>;

test('matrix_rank and entropy use the fp64 epsilon (numpy matrix_rank of the fp64 matrix)', () => {
  for (const [name, c] of Object.entries(ref)) {
    const m = esdMetrics(c.sv, c.N, c.M);
    assert.equal(m.matrix_rank, c.matrix_rank, name);
    assert.ok(relErr(m.entropy, c.entropy) < 1e-12, `${name}: entropy ${m.entropy} vs ${c.entropy}`);
    assert.ok(relErr(m.log_norm, c.log_norm) < 1e-12, `${name}: log_norm ${m.log_norm} vs ${c.log_norm}`);
  }
  assert.ok(ref.graded.rank_fp32_rule < ref.graded.matrix_rank, 'the graded case separates the fp32 and fp64 rules');
});

test('alpha: fitted only with ≥ 50 eigenvalues on a full spectrum; a rank-16 ΔW is "not fittable"', () => {
  const d = esdMetrics(ref.delta16.sv, ref.delta16.N, ref.delta16.M);
  assert.equal(ref.delta16.fittable, false);
  assert.equal(d.alpha_status, 'not fittable');
  for (const k of ['alpha', 'alpha_weighted', 'log_alpha_norm', 'xmin', 'D', 'sigma'] as const) assert.ok(Number.isNaN(d[k]), `${k} = ${d[k]}`);
  assert.ok(d.warnings.some((w) => /not fittable/.test(w)));
  const h = esdMetrics(ref.heavy.sv, ref.heavy.N, ref.heavy.M);
  assert.equal(h.alpha_status, 'fitted');
  assert.ok(Number.isFinite(h.alpha) && h.alpha > 1);
  assert.equal(h.full_spectrum, true);
});

test('truncated spectrum (top 64 of 200): no alpha/entropy/rank; log_norm and stable_rank exact from ‖W‖_F', () => {
  const c = ref.heavy;
  const top = c.sv.slice(0, 64);
  const t = esdMetrics(top, c.N, c.M, { frobeniusSq: c.frobeniusSq });
  assert.equal(t.alpha_status, 'truncated');
  assert.equal(t.full_spectrum, false);
  assert.ok(Number.isNaN(t.alpha) && Number.isNaN(t.entropy) && Number.isNaN(t.matrix_rank));
  assert.ok(relErr(t.log_norm, c.log_norm) < 1e-12, `log_norm ${t.log_norm} vs ${c.log_norm}`);
  assert.ok(relErr(t.stable_rank, c.stable_rank) < 1e-12);
  assert.ok(relErr(t.log_spectral_norm, c.log_spectral_norm) < 1e-12);
  // without ‖W‖_F a truncated spectrum cannot give log_norm (Σ top-64 λ would be too small): NaN, not a wrong number
  const u = esdMetrics(top, c.N, c.M);
  assert.ok(Number.isNaN(u.log_norm));
  assert.ok(top.reduce((a, s) => a + s * s, 0) < 0.99 * c.frobeniusSq);
});

test('frobeniusSquared (ORT, fp64 accumulation) = explicit Σ w² of the float32 values', async () => {
  const engine = new Engine();
  after(() => engine.dispose());
  const m = 37, n = 29;
  const W = Float32Array.from({ length: m * n }, (_, i) => Math.sin(0.37 * i) * (1 + (i % 7)));
  let want = 0;
  for (const w of W) want += w * w;
  const got = await frobeniusSquared(engine, W, m, n);
  assert.ok(relErr(got, want) < 1e-14, `${got} vs ${want}`);
});
