/**
 * analyzeAdapter (Cholesky-QR on ORT fp64 Gram matrices + Householder fallback) against numpy:
 * test/fixtures/numpy/lora.json holds, for every module of the adapter folders that
 * gen_reference.py wrote, np.linalg.svd of the EXPLICITLY formed ΔW = s·B@A and of the factors.
 *
 * Tolerances. The reference is computed in fp64 from exactly the values stored in the files
 * (F32/BF16 factors are rounded by numpy first), so the storage dtype adds no error of its own:
 * a correct implementation differs from numpy only by fp64 rounding. Cholesky-QR loses
 * κ(factor)²·ε relative to σ₁ (κ ≤ CHOLESKY_KAPPA_LIMIT = 300 → ≤ 1e-11), Householder QR and
 * Jacobi SVD are backward stable (~r·ε). Hence for every dtype:
 *   σ, ‖ΔW‖, stable/effective rank, gap: rel 1e-9, abs 1e-9·σ₁ (small σ are only accurate
 *     relative to σ₁ for the numpy reference itself);
 *   κ(A), κ(B): rel 1e-9·max(1, κ·1e-4)... i.e. rel 1e-9 for κ ≤ 1e4, κ·1e-13 beyond (σ_min
 *     of a κ=1e5 factor is accurate to ~ε·σ₁ only, so κ carries ~κ·ε relative error).
 * The brief's bound for F64 inputs is 1e-9 relative with both methods; a reader that rounds F64
 * factors to fp32 would show errors ~1e-7 and fail here.
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { analyzeAdapter, CHOLESKY_KAPPA_LIMIT } from '../../src/core/analysis/lora';
import { Engine } from '../../src/core/engine/ort';
import { openAdapter } from '../../src/core/formats/open';
import type { ModuleReport } from '../../src/shared/report';
import { assertClose } from './tolerance';

const repoRoot = path.resolve(__dirname, '../../..');
const FIX = path.join(repoRoot, 'test/fixtures/numpy');

interface RefModule {
  name: string; scale: number; rank: number; outFeatures: number; inFeatures: number; dtype: string; alpha?: number;
  rankPatternKey?: string | null; alphaPatternKey?: string | null;
  sigma: number[]; fro: number; spectral: number; spectral2: number; nuclear: number; stableRank: number; effectiveRank: number;
  sigmaA: number[]; sigmaB: number[]; kappaA: number; kappaB: number; normA: number; normB: number; balanceGap: number;
  mlxProduct?: number[];
}
interface RefCase { case: string; format: string; dtype: string; note: string; useRslora: boolean; fanInFanOut: boolean; modules: RefModule[] }

// JSON from python may contain NaN/Infinity literals (κ of a zero factor): map them before parsing.
const text = fs.readFileSync(path.join(FIX, 'lora.json'), 'utf8').replace(/\bNaN\b/g, '"__NaN"').replace(/-Infinity\b/g, '"__-Inf"').replace(/\bInfinity\b/g, '"__Inf"');
const ref: { cases: RefCase[] } = JSON.parse(text, (_k, v) => (v === '__NaN' ? NaN : v === '__Inf' ? Infinity : v === '__-Inf' ? -Infinity : v));

const engine = new Engine({ provider: 'cpu' });
after(async () => { await engine.dispose(); });

const REL = 1e-9;

/**
 * F64 factors stay fp64 end to end (fp64 reads, float64 Gram graph), so they are held to 1e-9 too.
 */

function kappaTol(k: number): { rel: number } {
  return { rel: Math.max(REL, k * 1e-13) };
}

function compareModule(m: ModuleReport, r: RefModule, label: string): void {
  const s1 = r.sigma[0];
  const tol = { rel: REL, abs: REL * s1 };
  assert.equal(m.rank, r.rank, `${label} rank`);
  assert.equal(m.outFeatures, r.outFeatures, `${label} out`);
  assert.equal(m.inFeatures, r.inFeatures, `${label} in`);
  assertClose(m.scale, r.scale, { rel: 1e-15 }, `${label} scale`);
  assert.equal(m.error, undefined, `${label}: unexpected error ${m.error}`);
  assertClose(m.sigma, r.sigma, tol, `${label} σ(ΔW)`);
  assertClose(m.spectral, r.spectral2, tol, `${label} ‖ΔW‖₂`);
  assertClose(m.fro, r.fro, tol, `${label} ‖ΔW‖_F`);
  assertClose(m.nuclear, r.nuclear, tol, `${label} ‖ΔW‖_*`);
  assertClose(m.stableRank, r.stableRank, { rel: REL }, `${label} stable rank`);
  assertClose(m.effectiveRank, r.effectiveRank, { rel: REL, abs: REL }, `${label} effective rank`);
  assertClose(m.sigmaA, r.sigmaA, { rel: REL, abs: REL * r.sigmaA[0] }, `${label} σ(A)`);
  assertClose(m.sigmaB, r.sigmaB, { rel: REL, abs: REL * (r.sigmaB[0] || 0) }, `${label} σ(B)`);
  assertClose(m.kappaA, r.kappaA, kappaTol(r.kappaA), `${label} κ(A)`);
  assertClose(m.kappaB, r.kappaB, kappaTol(r.kappaB), `${label} κ(B)`);
  assertClose(m.normA, r.normA, { rel: REL }, `${label} ‖A‖_F`);
  assertClose(m.normB, r.normB, { rel: REL, abs: 0 }, `${label} ‖B‖_F`);
  assertClose(m.balanceGap, r.balanceGap, { rel: REL, abs: 1e-12 }, `${label} balance gap`);
  for (let i = 1; i < m.sigma.length; i++) assert.ok(m.sigma[i] <= m.sigma[i - 1], `${label}: σ not descending at ${i}`);
}

test('fixture sanity: lora.json references are self-consistent (numpy ‖·‖₂ = σ₁, mlx orientation)', () => {
  assert.ok(ref.cases.length >= 12);
  for (const c of ref.cases) for (const r of c.modules) {
    assertClose(r.spectral, r.spectral2, { rel: 1e-12, abs: 1e-300 }, `${c.case}/${r.name} σ₁`);
    if (r.mlxProduct) assertClose(r.mlxProduct, r.sigma, { rel: 1e-12, abs: 1e-14 * r.sigma[0] }, `${c.case}/${r.name} mlx`);
  }
});

for (const c of ref.cases) {
  const methods: ('auto' | 'householder')[] = ['auto', 'householder'];
  for (const method of methods) {
    test(`analyzeAdapter(${method}) vs numpy: ${c.case} [${c.dtype}]${c.note ? ` — ${c.note}` : ''}`, async () => {
      const adapter = openAdapter(path.join(FIX, 'adapters', c.case));
      try {
        assert.equal(adapter.format, c.format);
        assert.equal(adapter.modules.length, c.modules.length, 'module count');
        const rep = await analyzeAdapter(adapter, { engine, method });
        assert.equal(rep.modules.length, c.modules.length);
        for (const r of c.modules) {
          const m = rep.modules.find((x) => x.name === r.name);
          assert.ok(m, `${c.case}: module ${r.name} missing (have ${rep.modules.map((x) => x.name).join(', ')})`);
          assert.equal(m.dtype, r.dtype);
          compareModule(m, r, `${c.case}/${r.name}/${method}`);
          if (method === 'householder') assert.equal(m.method, 'householder', `${r.name}: forced householder not used`);
          else if (Math.max(r.kappaA, Number.isFinite(r.kappaB) ? r.kappaB : 0) > CHOLESKY_KAPPA_LIMIT || !(r.sigmaB[0] > 0)) {
            assert.equal(m.method, 'householder', `${r.name}: κ(B)=${r.kappaB} should force the Householder fallback`);
          } else assert.equal(m.method, 'cholesky-qr', `${r.name}: well-conditioned factors should use Cholesky-QR`);
          // scale provenance
          if (c.useRslora) assert.match(m.scaleSource, /rsLoRA/, `${r.name}: ${m.scaleSource}`);
          if (r.rankPatternKey) assert.ok(m.scaleSource.includes('rank_pattern') && m.scaleSource.includes(r.rankPatternKey), `${r.name}: ${m.scaleSource}`);
          if (r.alphaPatternKey) assert.ok(m.scaleSource.includes('alpha_pattern') && m.scaleSource.includes(r.alphaPatternKey), `${r.name}: ${m.scaleSource}`);
          if (!r.rankPatternKey) assert.ok(!m.scaleSource.includes('rank_pattern'), `${r.name}: ${m.scaleSource}`);
          if (c.format === 'mlx') assert.match(m.scaleSource, /mlx/);
          if (r.alpha !== undefined) assert.equal(m.alpha, r.alpha);
        }
        if (c.fanInFanOut) assert.equal(rep.adapter.fanInFanOut, true);
        if (c.useRslora) assert.equal(rep.adapter.useRslora, true);
      } finally {
        adapter.store.close();
      }
    });
  }
}

test('B = 0 (PEFT init): σ(ΔW) = 0, κ(B) = ∞ with an "untrained module" warning, effective/stable rank 0, gap ≈ ‖AAᵀ‖_F/‖A‖_F² ', async () => {
  const c = ref.cases.find((x) => x.case === 'f64_zero_b')!;
  const adapter = openAdapter(path.join(FIX, 'adapters', c.case));
  try {
    const rep = await analyzeAdapter(adapter, { engine });
    const m = rep.modules[0];
    assert.deepEqual(m.sigma, [0, 0, 0, 0]);
    assert.equal(m.kappaB, Infinity);
    assert.ok(rep.warnings.some((w) => w.includes('B = 0: untrained module')), JSON.stringify(rep.warnings));
    assert.equal(m.fro, 0);
    assert.equal(m.effectiveRank, 0);
    assert.equal(m.stableRank, 0);
    assertClose(m.balanceGap, c.modules[0].balanceGap, { rel: 1e-9 }, 'gap');
  } finally {
    adapter.store.close();
  }
});

test('filter option and progress callback; report serialises to JSON', async () => {
  const adapter = openAdapter(path.join(FIX, 'adapters', 'f64_rslora_patterns'));
  try {
    const calls: number[] = [];
    const rep = await analyzeAdapter(adapter, { engine, filter: (m) => m.kind === 'q_proj', onProgress: (d) => calls.push(d) });
    assert.deepEqual(rep.modules.map((m) => m.name), ['model.layers.0.self_attn.q_proj', 'model.layers.1.self_attn.q_proj']);
    assert.ok(calls.length > 0 && calls[calls.length - 1] === 4);
    const round = JSON.parse(JSON.stringify(rep));
    assert.equal(round.modules.length, 2);
  } finally {
    adapter.store.close();
  }
});
