/**
 * Issue 8 item 1: Hessian condition number of ½‖s·B·A − M‖² at the minimiser, for NON-uniform
 * imbalances, against the explicit Hessian (numpy, test/fixtures/trust/gen_hessian.py), both the
 * closed form (hessian.ts factorHessianKappa) and `rebalanceAdapter`'s hessianKappaBefore/After.
 */
import { test, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../../src/core/engine/ort';
import { openAdapter } from '../../src/core/formats/open';
import { rebalanceAdapter } from '../../src/core/surgery/balora';
import { factorHessianKappa, hessianCondition, scaledHessianKappa } from '../../src/core/surgery/hessian';
import { singularValues } from '../../src/core/linalg/decomp';
import { mat, matmul } from '../../src/core/linalg/dense';
import { encodeSafetensors } from '../../src/core/formats/safetensors';
import { fromFloats } from '../../src/core/formats/dtype';
import { relErr } from './tolerance';
import { execFileSync } from 'node:child_process';

interface Case { out: number; inF: number; r: number; s: number; B: number[]; A: number[]; kappaBefore: number; kappaBalanced: number; balancedClosedForm: number; oldFormula: number }
const FIX = path.resolve(__dirname, '../../../test/fixtures/trust');
const ref = JSON.parse(fs.readFileSync(path.join(FIX, 'hessian.json'), 'utf8')) as { cases: Case[] };
const engine = new Engine();
after(() => engine.dispose());
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-trust-hess-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

function writeAdapter(dir: string, mods: { name: string; B: number[]; A: number[]; out: number; inF: number }[], r: number, alpha: number): void {
  fs.mkdirSync(dir, { recursive: true });
  const ts = mods.flatMap((m) => [
    { name: `base_model.model.${m.name}.lora_A.weight`, dtype: 'F64' as const, shape: [r, m.inF], data: fromFloats(Float64Array.from(m.A), 'F64') },
    { name: `base_model.model.${m.name}.lora_B.weight`, dtype: 'F64' as const, shape: [m.out, r], data: fromFloats(Float64Array.from(m.B), 'F64') },
  ]);
  fs.writeFileSync(path.join(dir, 'adapter_model.safetensors'), encodeSafetensors(ts));
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r, lora_alpha: alpha }));
}

test('closed form (σ₁(B)² + σ₁(A)²)/min(σ_r(B)², σ_r(A)²) = explicit numpy Hessian on non-uniform imbalances', () => {
  for (const c of ref.cases) {
    const sB = singularValues(mat(c.out, c.r, Float64Array.from(c.B))), sA = singularValues(mat(c.r, c.inF, Float64Array.from(c.A)));
    const k = factorHessianKappa(sB, sA, c.out, c.inF);
    assert.ok(relErr(k, c.kappaBefore) < 1e-6, `${c.out}×${c.inF} r=${c.r}: ${k} vs explicit ${c.kappaBefore}`);
  }
  // the old uniform-c formula is far off on these cases (the defect): at least one case by > 100×
  assert.ok(ref.cases.some((c) => c.kappaBefore / c.oldFormula > 100));
});

test('closed form = the project\'s explicit TS Hessian too (different variable order, s = 1), and = σ₁(c⁴+1)/σ_r for a uniform c', () => {
  const c = ref.cases[0];
  const B = mat(c.out, c.r, Float64Array.from(c.B)), A = mat(c.r, c.inF, Float64Array.from(c.A));
  // hessianCondition(U, V, T) is ½‖UVᵀ − T‖²: U = B, V = Aᵀ, T = BA
  const At = mat(c.inF, c.r); for (let i = 0; i < c.r; i++) for (let j = 0; j < c.inF; j++) At.data[j * c.r + i] = A.data[i * c.inF + j];
  const h = hessianCondition(B, At, matmul(B, A));
  assert.ok(relErr(h.kappa, c.kappaBefore) < 1e-6, `${h.kappa} vs ${c.kappaBefore}`);
  // uniform imbalance (cU√Σ, √ΣVᵀ/c) with σ = (4, 1), 5×5: both formulas agree
  for (const cc of [1, 2, 4]) assert.ok(relErr(factorHessianKappa([2 * cc, cc], [2 / cc, 1 / cc], 5, 5), scaledHessianKappa([4, 1], cc)) < 1e-12);
  // square factors (in = r): no pure-β eigenvalues; and a zero factor ⇒ ∞
  assert.equal(factorHessianKappa([1, 1], [1, 1], 2, 2), 1);
  assert.equal(factorHessianKappa([1, 0], [1, 1], 4, 4), Infinity);
});

test('rebalance result carries hessianKappaBefore/After per module = explicit Hessian before and at the balanced factors', async () => {
  for (const [i, c] of ref.cases.entries()) {
    const dir = path.join(root, `ad${i}`);
    writeAdapter(dir, [{ name: 'model.layers.0.self_attn.q_proj', B: c.B, A: c.A, out: c.out, inF: c.inF }], c.r, c.s * c.r);
    const a = openAdapter(dir);
    try {
      const res = await rebalanceAdapter(a, engine, path.join(root, `out${i}`));
      const m = res.perModule[0];
      assert.ok(relErr(m.hessianKappaBefore, c.kappaBefore) < 1e-6, `case ${i}: before ${m.hessianKappaBefore} vs ${c.kappaBefore}`);
      assert.ok(relErr(m.hessianKappaAfter, c.kappaBalanced) < 1e-6, `case ${i}: after ${m.hessianKappaAfter} vs ${c.kappaBalanced}`);
      assert.ok(relErr(m.hessianKappaAfter, c.balancedClosedForm) < 1e-6);
    } finally {
      a.store.close();
    }
  }
  // B = 0 (untrained module): κ_H before is ∞
  const dir = path.join(root, 'zero');
  writeAdapter(dir, [{ name: 'model.layers.0.self_attn.q_proj', B: new Array(12).fill(0), A: [1, 2, 0, 0, 1, -1], out: 6, inF: 3 }], 2, 2);
  const a = openAdapter(dir);
  try {
    const res = await rebalanceAdapter(a, engine, path.join(root, 'zero-out'));
    assert.equal(res.perModule[0].hessianKappaBefore, Infinity);
  } finally {
    a.store.close();
  }
});

test('`lora-lens rebalance PATH OUT --json` reports perModule[].hessianKappaBefore/After (exact key names)', async () => {
  const c = ref.cases[1];
  const dir = path.join(root, 'cli-in');
  writeAdapter(dir, [{ name: 'model.layers.0.self_attn.v_proj', B: c.B, A: c.A, out: c.out, inF: c.inF }], c.r, c.s * c.r);
  // the CLI in a child process (its stdout is the JSON; the test runner owns this process's stdout)
  const stdout = execFileSync(process.execPath, [path.join(__dirname, '../../src/core/cli.js'), 'rebalance', dir, path.join(root, 'cli-out'), '--json'], { encoding: 'utf8' });
  const j = JSON.parse(stdout) as { perModule: { hessianKappaBefore: number; hessianKappaAfter: number }[] };
  assert.ok(relErr(j.perModule[0].hessianKappaBefore, c.kappaBefore) < 1e-6, `${j.perModule[0].hessianKappaBefore} vs ${c.kappaBefore}`);
  assert.ok(relErr(j.perModule[0].hessianKappaAfter, c.kappaBalanced) < 1e-6);
});
