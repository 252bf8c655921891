/**
 * Spectra of structured adapter modules without forming ΔW, and DoRA's magnitude/direction split.
 *
 * Low-rank products: for ΔW = P·Q (P m×R, Q R×n) the non-zero singular values are √eig(G_P^½ G_Q G_P^½)
 * with G_P = PᵀP, G_Q = QQᵀ (R×R Grams in onnxruntime, fp64; eigenproblems in fp64 TypeScript; the
 * symmetric square root keeps rank-deficient P exact where Cholesky would fail).
 *
 *   LoHa  (W1a·W1b) ⊙ (W2a·W2b) = (W1a • W2a)(W1b ∗ W2b): the face-splitting (row-wise Kronecker)
 *         product of the up factors times the Khatri–Rao (column-wise Kronecker) product of the down
 *         factors, so ΔW has rank ≤ r1·r2 and its spectrum comes from the (r1r2)×(r1r2) route above.
 *   LoKr  σ(W1 ⊗ W2) = {σᵢ(W1)·σⱼ(W2)}: spectra of the two small factors (each from its own low-rank
 *         route or Gram), multiplied out — the a·c·b·d matrix is never formed.
 *   VeRA  ΔW = (diag(λ_b)·B·diag(λ_d))·A: one rank-r product.
 *   DoRA  W' = m ⊙ V/‖V‖_row with V = W₀ + s·B·A (PEFT: norms over the input dimension, one per
 *         output row). Needs the base weight; reports ‖W₀‖_row (magnitude at initialisation), ‖V‖_row,
 *         the learned m, cos∠(W₀ᵢ, Vᵢ) per row and the TRUE ΔW = W' − W₀ (its norms and leading
 *         singular values by randomized SVD, all products in onnxruntime) next to plain s·B·A.
 */
import { gramMat } from '../engine/kernels';
import type { Adapter, LoraModule, StructuredModule } from '../formats/adapter';
import { groupOf } from '../formats/adapter';
import { FormatError, throwIfCancelled, CancelToken } from '../formats/errors';
import { singularValues } from '../linalg/decomp';
import { symEigTridiag } from '../linalg/eigen';
import { mat, matmul } from '../linalg/dense';
import type { Engine } from '../engine/ort';
import { GraphBuilder } from '../engine/graph';
import { rsvd } from '../base/rsvd';
import { baseWeightFor, readBaseWeight, type BaseModel } from '../base/basemodel';
import type { TensorStore } from '../formats/safetensors';
import type { ModuleReport, StructureInfo } from '../../shared/report';
import type { DoraModuleReport } from '../../shared/dora';
export type { DoraModuleReport };

/** A module's factors in PEFT orientation (A r×in, B out×r), fp64, stored transposes undone. */
function readFactors(adapter: Adapter, m: LoraModule): { A: Float64Array; B: Float64Array; r: number; inF: number; outF: number } {
  const rd = (f: LoraModule['A']): { d: Float64Array; rows: number; cols: number } => {
    const d = adapter.store.readF64(f.tensor.name);
    const [p, q] = dims(f.tensor);
    if (!f.transposed) return { d, rows: p, cols: q };
    const t = new Float64Array(d.length);
    for (let i = 0; i < p; i++) for (let j = 0; j < q; j++) t[j * p + i] = d[i * q + j];
    return { d: t, rows: q, cols: p };
  };
  const A = rd(m.A), B = rd(m.B);
  for (const [f, v] of [[m.A, A.d], [m.B, B.d]] as const) for (const x of v) if (!Number.isFinite(x)) throw new FormatError(adapter.weightsFile, `tensor "${f.tensor.name}" has NaN/Inf values`);
  return { A: A.d, B: B.d, r: A.rows, inF: A.cols, outF: B.rows };
}

/** Largest inner dimension R of a structured product analysed exactly (eigenproblems are O(R³) in TS). */
export const MAX_STRUCTURED_RANK = 1024;

/** Singular values (descending, all R of them) of P·Q from the two Grams. */
export async function productSpectrum(engine: Engine, P: Float64Array, m: number, R: number, Q: Float64Array, n: number): Promise<Float64Array> {
  if (R > MAX_STRUCTURED_RANK) throw new Error(`inner dimension ${R} > ${MAX_STRUCTURED_RANK}`);
  const GP = await gramMat(engine, P, m, R, 'cols');
  const GQ = await gramMat(engine, Q, R, n, 'rows');
  const { values, vectors } = symEigTridiag(GP.data, R, true);
  // S = V Λ^½ Vᵀ
  const VL = new Float64Array(R * R);
  for (let j = 0; j < R; j++) {
    const s = Math.sqrt(Math.max(values[j], 0));
    for (let i = 0; i < R; i++) VL[i * R + j] = vectors![j * R + i] * s;
  }
  const V = new Float64Array(R * R);
  for (let j = 0; j < R; j++) for (let i = 0; i < R; i++) V[i * R + j] = vectors![j * R + i];
  const S = matmul(mat(R, R, VL), { rows: R, cols: R, data: transposeSq(V, R) });
  const M = matmul(matmul(S, GQ), S);
  for (let i = 0; i < R; i++) for (let j = 0; j < i; j++) { const a = (M.data[i * R + j] + M.data[j * R + i]) / 2; M.data[i * R + j] = M.data[j * R + i] = a; }
  return symEigTridiag(M.data, R, false).values.map((x) => Math.sqrt(Math.max(x, 0)));
}

function transposeSq(a: Float64Array, n: number): Float64Array {
  const t = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[j * n + i] = a[i * n + j];
  return t;
}

const dims = (t: { shape: number[] }): [number, number] => [t.shape[0] ?? 1, t.shape.slice(1).reduce((a, b) => a * b, 1)];

/** Face-splitting product (row-wise Kronecker): (m×r1, m×r2) → m×(r1·r2). */
export function faceSplit(X: Float64Array, Y: Float64Array, m: number, r1: number, r2: number): Float64Array {
  const out = new Float64Array(m * r1 * r2);
  for (let i = 0; i < m; i++) for (let a = 0; a < r1; a++) {
    const x = X[i * r1 + a], o = i * r1 * r2 + a * r2;
    for (let b = 0; b < r2; b++) out[o + b] = x * Y[i * r2 + b];
  }
  return out;
}

/** Khatri–Rao product (column-wise Kronecker): (r1×n, r2×n) → (r1·r2)×n. */
export function khatriRao(X: Float64Array, Y: Float64Array, r1: number, r2: number, n: number): Float64Array {
  const out = new Float64Array(r1 * r2 * n);
  for (let a = 0; a < r1; a++) for (let b = 0; b < r2; b++) {
    const o = (a * r2 + b) * n;
    for (let j = 0; j < n; j++) out[o + j] = X[a * n + j] * Y[b * n + j];
  }
  return out;
}

/** Singular values of one Kronecker factor: full (Gram of the smaller side) or a low-rank product. */
async function factorSpectrum(engine: Engine, store: TensorStore, t: Record<string, { name: string; shape: number[] }>, which: '1' | '2'): Promise<Float64Array> {
  const full = t[`w${which}`];
  if (full) {
    const [p, q] = dims(full);
    const d = Math.min(p, q);
    if (d > MAX_STRUCTURED_RANK) throw new Error(`Kronecker factor w${which} is ${p}×${q}; spectra of factors with min side > ${MAX_STRUCTURED_RANK} are not computed`);
    const x = store.readF64(full.name);
    if (d <= 64) return singularValues(mat(p, q, x));
    const G = await gramMat(engine, x, p, q, p <= q ? 'rows' : 'cols');
    return symEigTridiag(G.data, d, false).values.map((v) => Math.sqrt(Math.max(v, 0)));
  }
  const a = t[`w${which}a`], b = t[`w${which}b`];
  const [p, r] = dims(a), [, q] = dims(b);
  return productSpectrum(engine, store.readF64(a.name), p, r, store.readF64(b.name), q);
}

export type { StructureInfo };

export interface StructuredModuleReport extends ModuleReport {
  structure: StructureInfo;
}

function stats(v: ArrayLike<number>): { min: number; max: number; mean: number } {
  let mn = Infinity, mx = -Infinity, s = 0;
  for (let i = 0; i < v.length; i++) { mn = Math.min(mn, v[i]); mx = Math.max(mx, v[i]); s += v[i]; }
  return { min: mn, max: mx, mean: v.length ? s / v.length : NaN };
}

/** Spectrum of a structured module's ΔW (scaled), plus what identity was used. */
export async function structuredSpectrum(engine: Engine, adapter: Adapter, sm: StructuredModule): Promise<{ sigma: Float64Array; structure: StructureInfo }> {
  const st = adapter.store, t = sm.tensors;
  const sc = Math.abs(sm.scale);
  const finite = (name: string, x: Float64Array): Float64Array => {
    for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) throw new FormatError(adapter.weightsFile, `tensor "${name}" has NaN/Inf values`);
    return x;
  };
  const rd = (role: string) => finite(t[role].name, st.readF64(t[role].name));
  if (t.t1 || t.t2) throw new Error('CP/Tucker-decomposed module (hada_t*/lokr_t2): spectrum not computed');
  if (sm.type === 'loha') {
    const [m, r1] = dims(t.w1a), [, r2] = dims(t.w2a), [, n] = dims(t.w1b);
    const R = r1 * r2;
    if (R > MAX_STRUCTURED_RANK) throw new Error(`LoHa rank product r1·r2 = ${R} > ${MAX_STRUCTURED_RANK}`);
    const P = faceSplit(rd('w1a'), rd('w2a'), m, r1, r2);
    const Q = khatriRao(rd('w1b'), rd('w2b'), r1, r2, n);
    const s = (await productSpectrum(engine, P, m, R, Q, n)).map((x) => x * sc);
    return { sigma: s, structure: { type: 'loha', method: 'face-splitting (W1a•W2a) × Khatri–Rao (W1b∗W2b), R×R Gram route', maxRank: Math.min(R, m, n), details: { r1, r2 } } };
  }
  if (sm.type === 'lokr') {
    for (const role of Object.keys(t)) finite(t[role].name, st.readF64(t[role].name));
    const s1 = await factorSpectrum(engine, st, t, '1');
    const s2 = await factorSpectrum(engine, st, t, '2');
    const all = new Float64Array(s1.length * s2.length);
    let k = 0;
    for (const a of s1) for (const b of s2) all[k++] = a * b * sc;
    all.sort().reverse();
    const shape = (w: '1' | '2') => (t[`w${w}`] ? dims(t[`w${w}`]) : [dims(t[`w${w}a`])[0], dims(t[`w${w}b`])[1]]);
    const rk = (s: Float64Array) => s.filter((x) => x > 1e-12 * (s[0] || 1)).length;
    return {
      sigma: all,
      structure: {
        type: 'lokr', method: 'σ(W1 ⊗ W2) = σ(W1)·σ(W2)', maxRank: rk(s1) * rk(s2),
        details: { w1: { shape: shape('1'), full: !!t.w1, sigma: Array.from(s1) }, w2: { shape: shape('2'), full: !!t.w2, sigma: Array.from(s2) } },
      },
    };
  }
  // VeRA
  const lb = rd('lambda_b'), ld = rd('lambda_d');
  const [, r] = dims(t.B);
  const out = sm.outFeatures, n = sm.inFeatures;
  const Bf = rd('B');
  const P = new Float64Array(out * r);
  for (let i = 0; i < out; i++) for (let j = 0; j < r; j++) P[i * r + j] = lb[i] * Bf[i * r + j] * ld[j];
  const Af = rd('A');
  const [, nA] = dims(t.A);
  const Q = new Float64Array(r * n);
  for (let j = 0; j < r; j++) for (let i = 0; i < n; i++) Q[j * n + i] = Af[j * nA + i];
  const s = await productSpectrum(engine, P, out, r, Q, n);
  return { sigma: s, structure: { type: 'vera', method: '(diag(λ_b)·B·diag(λ_d))·A, r×r Gram route', maxRank: r, details: { lambdaB: stats(lb), lambdaD: stats(ld), lambdaDValues: Array.from(ld) } } };
}

function effectiveRank(s: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < s.length; i++) sum += s[i];
  if (!(sum > 0)) return 0;
  let h = 0;
  for (let i = 0; i < s.length; i++) { const p = s[i] / sum; if (p > 0) h -= p * Math.log(p); }
  return Math.exp(h);
}

/** Report rows (ModuleReport + `structure`) for every structured module of an adapter. */
export async function analyzeStructured(adapter: Adapter, engine: Engine, token?: CancelToken): Promise<StructuredModuleReport[]> {
  const rows: StructuredModuleReport[] = [];
  for (const sm of adapter.structured ?? []) {
    throwIfCancelled(token);
    const dts = [...new Set(Object.values(sm.tensors).map((x) => x.dtype))];
    const base = {
      name: sm.name, layer: sm.layer, kind: sm.kind, group: groupOf({ name: sm.name, layer: sm.layer } as LoraModule), rank: sm.rank,
      outFeatures: sm.outFeatures, inFeatures: sm.inFeatures, alpha: sm.alpha, scale: sm.scale, scaleSource: sm.scaleSource,
      dtype: dts.join('/'), dora: false, sigmaA: [], sigmaB: [], kappaA: NaN, kappaB: NaN, normA: NaN, normB: NaN, balanceGap: NaN,
      method: 'cholesky-qr' as const,
    };
    try {
      const { sigma, structure } = await structuredSpectrum(engine, adapter, sm);
      let fro2 = 0, nuc = 0;
      for (const s of sigma) { fro2 += s * s; nuc += s; }
      const s1 = sigma[0] ?? 0;
      const keep = Array.from(sigma.subarray(0, Math.min(sigma.length, MAX_STRUCTURED_RANK)));
      const rank = sm.type === 'lokr' && !sm.tensors.w1a && !sm.tensors.w2a ? structure.maxRank : sm.rank; // both Kronecker factors full: no 'dim'
      rows.push({ ...base, rank, sigma: keep, fro: Math.sqrt(fro2), spectral: s1, nuclear: nuc, stableRank: s1 > 0 ? fro2 / (s1 * s1) : 0, effectiveRank: effectiveRank(sigma), structure });
    } catch (e) {
      rows.push({
        ...base, sigma: [], fro: NaN, spectral: NaN, nuclear: NaN, stableRank: NaN, effectiveRank: NaN, error: `${sm.type}: ${(e as Error).message}`,
        structure: { type: sm.type, method: 'not analysed', maxRank: NaN, details: {} },
      });
    }
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// DoRA
// ---------------------------------------------------------------------------------------------

function doraGraph(): Uint8Array {
  // V = W0 + s·B·A; rows norms of W0 and V; dots W0ᵢ·Vᵢ; D = diag(m/‖V‖)·V − W0 (true ΔW); D − s·B·A.
  const g = new GraphBuilder('dora_true_delta');
  g.input('w', 'float32', ['o', 'i']);
  g.input('a', 'float32', ['r', 'i']);
  g.input('b', 'float32', ['o', 'r']);
  g.input('s', 'float32', [1]);
  g.input('mag', 'float32', ['o', 1]);
  const lora = g.op('Mul', [g.op('MatMul', ['b', 'a']), 's']);
  const v = g.op('Add', ['w', lora]);
  const axes = g.constant([1], 'int64', [1]);
  const nv = g.op('Sqrt', [g.op('ReduceSumSquare', [v], { axes: [1], keepdims: 1 })], {}, 'normV');
  g.op('Sqrt', [g.op('ReduceSumSquare', ['w'], { axes: [1], keepdims: 1 })], {}, 'normW');
  g.op('ReduceSum', [g.op('Mul', ['w', v]), axes], { keepdims: 1 }, 'dot');
  const d = g.op('Sub', [g.op('Mul', [v, g.op('Div', ['mag', nv])]), 'w'], {}, 'delta');
  g.op('ReduceSumSquare', [g.op('Sub', [d, lora])], { keepdims: 0 }, 'diffSq');
  g.op('ReduceSumSquare', [lora], { keepdims: 0 }, 'loraSq');
  g.op('ReduceSumSquare', [d], { keepdims: 0 }, 'deltaSq');
  for (const o of ['normV', 'normW', 'dot']) g.output(o, 'float32', ['o', 1]);
  g.output('delta', 'float32', ['o', 'i']);
  for (const o of ['diffSq', 'loraSq', 'deltaSq']) g.output(o, 'float32', []);
  return g.build();
}

/**
 * DoRA analysis of one module against its base weight (a BaseModel folder or a tensor store).
 * `k` leading singular values of the true ΔW are computed (randomized SVD in onnxruntime).
 */
export async function analyzeDora(engine: Engine, adapter: Adapter, m: LoraModule, base: BaseModel | TensorStore, k = 8): Promise<DoraModuleReport> {
  if (!m.magnitude) throw new Error(`${m.name}: not a DoRA module (no magnitude vector)`);
  const ref = baseWeightFor(m, base);
  const W0 = readBaseWeight(base, ref);
  const f = readFactors(adapter, m);
  const mag = Float32Array.from(adapter.store.readF64(m.magnitude.name));
  if (mag.length !== f.outF) throw new FormatError(adapter.weightsFile, `DoRA magnitude "${m.magnitude.name}" has ${mag.length} entries; ΔW has ${f.outF} rows`);
  const sess = await engine.session('dora_true_delta', doraGraph);
  const res = await engine.run(sess, {
    w: engine.tensor('float32', W0, [f.outF, f.inF]), a: engine.tensor('float32', Float32Array.from(f.A), [f.r, f.inF]),
    b: engine.tensor('float32', Float32Array.from(f.B), [f.outF, f.r]), s: engine.tensor('float32', Float32Array.of(m.scale), [1]),
    mag: engine.tensor('float32', mag, [f.outF, 1]),
  });
  const nv = res.normV.data as Float32Array, nw = res.normW.data as Float32Array, dot = res.dot.data as Float32Array;
  const cos = Array.from(dot, (x, i) => (nw[i] > 0 && nv[i] > 0 ? Math.max(-1, Math.min(1, x / (nw[i] * nv[i]))) : 1));
  const ratio = Array.from(mag, (x, i) => (nw[i] > 0 ? x / nw[i] : NaN));
  const delta = res.delta.data as Float32Array;
  const sc = (x: string) => Math.sqrt((res[x].data as Float32Array)[0]);
  const kk = Math.min(k, f.outF, f.inF);
  const r = await rsvd(engine, Float32Array.from(delta), f.outF, f.inF, kk, { powerIters: 4 });
  const cs = stats(cos);
  return {
    name: m.name, normBefore: Array.from(nw), magnitude: Array.from(mag), normMerged: Array.from(nv), directionCos: cos,
    summary: { magnitudeRatio: stats(ratio), directionCos: cs, maxAngleDeg: (Math.acos(cs.min) * 180) / Math.PI },
    trueDelta: { fro: sc('deltaSq'), sigma: Array.from(r.S), loraFro: sc('loraSq'), relDiffFromLora: sc('deltaSq') > 0 ? sc('diffSq') / sc('deltaSq') : 0 },
  };
}
