/**
 * Issue 8 items 5 and 6: fp64 graphs keep fp64 precision (no FusedMatMul with an fp32 scale), and
 * κ of an all-zero factor is ∞ with a warning "B = 0: untrained module".
 */
import { test, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine, loadOrt } from '../../src/core/engine/ort';
import { GraphBuilder } from '../../src/core/engine/graph';
import { graphUsesFloat64 } from '../../src/core/engine/precision';
import { analyzeAdapter } from '../../src/core/analysis/lora';
import { openAdapter } from '../../src/core/formats/open';
import { encodeSafetensors } from '../../src/core/formats/safetensors';
import { fromFloats } from '../../src/core/formats/dtype';

const engine = new Engine();
after(() => engine.dispose());

/** Y = (X·X)·c with c = 1/3 a DOUBLE initializer: the pattern onnxruntime's MatMulScaleFusion rewrites. */
function scaledMatMul(): Uint8Array {
  const g = new GraphBuilder('fp64_scaled_matmul');
  g.input('X', 'float64', [8, 8]);
  const c = g.constant([1 / 3], 'float64', []);
  g.op('Mul', [g.op('MatMul', ['X', 'X']), c], {}, 'Y');
  g.output('Y', 'float64', [8, 8]);
  return g.build();
}

test('fp64 graph MatMul·constant keeps fp64 precision (~1e-16 relative, not fp32 1e-8)', async () => {
  const n = 8;
  const X = Float64Array.from({ length: n * n }, (_, i) => Math.sin(1.7 * i + 0.3) + 0.1 * Math.cos(i * i));
  // reference from the definition, fp64 loops (accumulation order error ≤ n·eps)
  const ref = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let k = 0; k < n; k++) s += X[i * n + k] * X[k * n + j];
    ref[i * n + j] = s / 3;
  }
  const sess = await engine.session('test_fp64_scaled_matmul', scaledMatMul);
  const Y = (await engine.run(sess, { X: engine.tensor('float64', X, [n, n]) })).Y.data as Float64Array;
  let err = 0, mx = 0;
  for (let i = 0; i < ref.length; i++) { err = Math.max(err, Math.abs(Y[i] - ref[i])); mx = Math.max(mx, Math.abs(ref[i])); }
  assert.ok(err / mx < 1e-14, `relative error ${err / mx}`);
  // the same graph at level 'all' (what the engine used before): shows what the test guards against
  const ort = loadOrt();
  const raw = await ort.InferenceSession.create(scaledMatMul(), { graphOptimizationLevel: 'all', executionProviders: ['cpu'] });
  const Yall = (await raw.run({ X: new ort.Tensor('float64', X, [n, n]) })).Y.data as Float64Array;
  let errAll = 0;
  for (let i = 0; i < ref.length; i++) errAll = Math.max(errAll, Math.abs(Yall[i] - ref[i]));
  await raw.release();
  console.log(`fp64 MatMul·(1/3): engine rel. error ${(err / mx).toExponential(2)}; level 'all' ${(errAll / mx).toExponential(2)}`);
});

test('graphUsesFloat64: fp64 inputs/outputs, DOUBLE initializers and Cast(to = DOUBLE) detected; fp32 graphs not', () => {
  assert.equal(graphUsesFloat64(scaledMatMul()), true);
  const g32 = new GraphBuilder('f32');
  g32.input('X', 'float32', [2, 2]);
  g32.op('Mul', [g32.op('MatMul', ['X', 'X']), g32.constant([0.5], 'float32', [])], {}, 'Y');
  g32.output('Y', 'float32', [2, 2]);
  assert.equal(graphUsesFloat64(g32.build()), false);
  const gc = new GraphBuilder('cast');
  gc.input('X', 'float32', [2, 2]);
  gc.op('Cast', [gc.op('Cast', ['X'], { to: 11 })], { to: 1 }, 'Y');
  gc.output('Y', 'float32', [2, 2]);
  assert.equal(graphUsesFloat64(gc.build()), true);
});

test('all-zero B: κ(B) = ∞ (not NaN) and the warning "B = 0: untrained module"', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-zero-b-'));
  try {
    const A = Float32Array.from({ length: 2 * 6 }, (_, i) => Math.sin(i + 1));
    fs.writeFileSync(path.join(dir, 'adapter_model.safetensors'), encodeSafetensors([
      { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', dtype: 'F32', shape: [2, 6], data: fromFloats(A, 'F32') },
      { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', dtype: 'F32', shape: [5, 2], data: fromFloats(new Float32Array(10), 'F32') },
      { name: 'base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight', dtype: 'F32', shape: [2, 6], data: fromFloats(A, 'F32') },
      { name: 'base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight', dtype: 'F32', shape: [5, 2], data: fromFloats(Float32Array.from({ length: 10 }, (_, i) => Math.cos(i)), 'F32') },
    ]));
    fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4 }));
    const a = openAdapter(dir);
    try {
      const rep = await analyzeAdapter(a, { engine });
      const q = rep.modules.find((m) => m.name.endsWith('q_proj'))!, v = rep.modules.find((m) => m.name.endsWith('v_proj'))!;
      assert.equal(q.kappaB, Infinity);
      assert.ok(Number.isFinite(q.kappaA) && q.kappaA >= 1);
      assert.ok(Number.isFinite(v.kappaB));
      const w = rep.warnings.filter((x) => x.includes('B = 0: untrained module'));
      assert.equal(w.length, 1, JSON.stringify(rep.warnings));
      assert.ok(w[0].includes(q.name));
    } finally {
      a.store.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
