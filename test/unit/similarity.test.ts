/**
 * Adapter similarity (src/core/similarity) against numpy forming ΔW = s·B·A explicitly
 * (test/fixtures/similarity/gen_similarity.py → expected.json), the invariance under
 * B → B·G, A → G⁻¹·A, and the `lora-lens similarity --json` contract.
 *
 * Tolerances: inputs are the exact stored values (F32, or F64 for a1g, read exactly); the Grams
 * are accumulated in fp64 by onnxruntime and the small decompositions are fp64, so results agree
 * with numpy to ~κ(factor)²·ε (κ ≤ ~30 here): 1e-9 absolute on cosines.
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Engine } from '../../src/core/engine/ort';
import { openAdapter } from '../../src/core/formats/open';
import { adapterSimilarity, SimilarityResult } from '../../src/core/similarity/similarity';
import { assertClose } from './tolerance';

const repoRoot = path.resolve(__dirname, '../../..');
const FIX = path.join(repoRoot, 'test/fixtures/similarity');
const engine = new Engine({ provider: 'cpu' });
after(() => engine.dispose());

interface ExpPair { i: number; j: number; cosine: number; colCosines: number[]; rowCosines: number[] }
interface Expected {
  order: string[]; matrix: number[][]; signed: number[][]; shared: number[][];
  modules: Record<string, { norms: (number | null)[]; ranks: (number | null)[]; pairs: ExpPair[] }>;
}
const exp: Expected = JSON.parse(fs.readFileSync(path.join(FIX, 'expected.json'), 'utf8'));

async function compare(names: string[]): Promise<SimilarityResult> {
  const ads = names.map((n) => openAdapter(path.join(FIX, n)));
  try {
    return await adapterSimilarity(ads, { engine });
  } finally {
    for (const a of ads) a.store.close();
  }
}

test('similarity matches numpy on explicitly formed ΔW (cosines, principal angles, norms, ranks, matrix)', async () => {
  const r = await compare(exp.order);
  assertClose(r.matrix.flat(), exp.matrix.flat(), { abs: 1e-9 }, 'matrix');
  assertClose(r.signed.flat(), exp.signed.flat(), { abs: 1e-9 }, 'signed');
  for (const x of r.matrix.flat()) assert.ok(x >= 0 && x <= 1, `matrix entry ${x} in [0, 1]`);
  for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) if (i !== j) assert.equal(r.shared[i][j], exp.shared[i][j], `shared ${i},${j}`);
  assert.deepEqual(Object.keys(r.modules).sort(), Object.keys(exp.modules).sort());
  for (const [name, em] of Object.entries(exp.modules)) {
    const m = r.modules[name];
    assert.deepEqual(m.ranks, em.ranks, `${name} ranks`);
    em.norms.forEach((n, i) => { if (n === null) assert.equal(m.norms[i], null); else assertClose(m.norms[i]!, n, { rel: 1e-10 }, `${name} norm ${i}`); });
    assert.equal(m.pairs.length, em.pairs.length, `${name} pairs`);
    for (const ep of em.pairs) {
      const p = m.pairs.find((x) => x.i === ep.i && x.j === ep.j);
      assert.ok(p, `${name} pair ${ep.i},${ep.j}`);
      assertClose(p.cosine, ep.cosine, { abs: 1e-9 }, `${name} cos ${ep.i},${ep.j}`);
      assert.equal(p.colCosines.length, ep.colCosines.length, `${name} #col angles`);
      assertClose(p.colCosines, ep.colCosines, { abs: 1e-9 }, `${name} col ${ep.i},${ep.j}`);
      assertClose(p.rowCosines, ep.rowCosines, { abs: 1e-9 }, `${name} row ${ep.i},${ep.j}`);
    }
  }
  // The rank-deficient o_proj of a1 (duplicated B column) has a 2-dimensional column space.
  assert.equal(r.modules['model.layers.0.self_attn.o_proj'].ranks[0], 2);
  // a2's v_proj has B = 0: no cosine with anyone; a3's o_proj has another width: skipped.
  assert.equal(r.modules['model.layers.0.self_attn.v_proj'].matrix[0][1], null);
  assert.ok(r.skipped.some((s) => s.module === 'model.layers.0.self_attn.o_proj' && s.adapter === 'a3'));
});

test('similarity is invariant to B → BG, A → G⁻¹A (a1g is a1 re-split; a3.q is 0.5·ΔW re-split)', async () => {
  const r = await compare(['a1', 'a1g', 'a2', 'a3']);
  assertClose(r.matrix[0][1], 1, { abs: 1e-12 }, 'S(a1, a1g)');
  for (const [name, m] of Object.entries(r.modules)) {
    const p = m.pairs.find((x) => x.i === 0 && x.j === 1);
    if (!p) continue;
    assertClose(p.cosine, 1, { abs: 1e-12 }, `${name} cos(a1, a1g)`);
    for (const c of [...p.colCosines, ...p.rowCosines]) assertClose(c, 1, { abs: 1e-9 }, `${name} principal cosines`);
    // Everything a1 and a1g say about a third adapter is the same.
    for (const k of [2, 3]) {
      assertClose(m.cosine[0][k] ?? NaN, m.cosine[1][k] ?? NaN, { abs: 1e-12 }, `${name} cos with ${k}`);
      assertClose(m.colOverlap[0][k] ?? NaN, m.colOverlap[1][k] ?? NaN, { abs: 1e-9 }, `${name} col overlap with ${k}`);
    }
  }
  for (const k of [2, 3]) assertClose(r.matrix[0][k], r.matrix[1][k], { abs: 1e-12 }, `S with ${k}`);
  // a3.q = 0.5·ΔW_a1.q in another format and split: cosine 1, same spaces.
  const q = r.modules['model.layers.0.self_attn.q_proj'].pairs.find((x) => x.i === 0 && x.j === 3)!;
  assertClose(q.cosine, 1, { abs: 1e-9 }, 'q cos(a1, a3)');
  // Contrast: the flattened-A cosine that other tools report is NOT invariant (a1 vs a1g).
  const a1 = openAdapter(path.join(FIX, 'a1')), a1g = openAdapter(path.join(FIX, 'a1g'));
  try {
    const x = a1.store.readF64(a1.modules[0].A.tensor.name), y = a1g.store.readF64(a1g.modules[0].A.tensor.name);
    let d = 0, nx = 0, ny = 0;
    for (let i = 0; i < x.length; i++) { d += x[i] * y[i]; nx += x[i] ** 2; ny += y[i] ** 2; }
    assert.ok(Math.abs(d / Math.sqrt(nx * ny)) < 0.99, 'flattened-A cosine changes under re-splitting');
  } finally {
    a1.store.close(); a1g.store.close();
  }
});

test('lora-lens similarity --json: contract keys, matrix in [0, 1], errors name the file', () => {
  const cli = path.join(repoRoot, 'out/src/core/cli.js');
  const p = spawnSync(process.execPath, [cli, 'similarity', path.join(FIX, 'a1'), path.join(FIX, 'a2'), path.join(FIX, 'a1g'), '--json'], { encoding: 'utf8' });
  assert.equal(p.status, 0, p.stderr);
  const j = JSON.parse(p.stdout);
  assert.equal(j.adapters.length, 3);
  assert.equal(j.matrix.length, 3);
  for (const row of j.matrix) { assert.equal(row.length, 3); for (const x of row) assert.ok(x >= 0 && x <= 1); }
  assert.equal(typeof j.modules, 'object');
  assert.ok(j.modules['model.layers.0.self_attn.q_proj']);
  assertClose(j.matrix[0][2], 1, { abs: 1e-12 }, 'a1 vs a1g');
  const bad = spawnSync(process.execPath, [cli, 'similarity', path.join(FIX, 'a1'), path.join(FIX, 'missing'), '--json'], { encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^error: .*missing/);
  const usage = spawnSync(process.execPath, [cli, 'similarity', path.join(FIX, 'a1')], { encoding: 'utf8' });
  assert.equal(usage.status, 2);
});
