/**
 * BaLoRA projection (Castin et al., `ProjectionCallback`, papers.md §1.2) and the low-rank core
 * machinery shared by every surgery operation.
 *
 * With thin QRs B = Q_B R_B (out×r) and Aᵀ = Q_A R_A (in×r):  B A = Q_B (R_B R_Aᵀ) Q_Aᵀ.
 * SVD of the r×r core R_B R_Aᵀ = U Σ Vᵀ gives the balanced factorisation
 *     B' = Q_B U Σ^½ = B · (R_B⁻¹ U Σ^½),   A' = Σ^½ Vᵀ Q_Aᵀ = (Σ^½ Vᵀ R_A⁻ᵀ) · A,
 * with B'A' = BA and B'ᵀB' = A'A'ᵀ = Σ. Truncating U, Σ, V to k columns gives the best rank-k
 * approximation in balanced form (rank reduction, SVD merges).
 *
 * Architecture rule: products touching a full factor run in onnxruntime (fp64 graphs); the
 * decompositions (Cholesky, Jacobi SVD, triangular inverses) are fp64 TypeScript on r×r matrices.
 * R factors come from Cholesky of the ORT Gram matrices; when the Gram is not positive definite or
 * the factor's κ exceeds CHOLESKY_KAPPA_LIMIT, Householder QR in fp64 is used instead and the thin
 * Q multiplies through ORT (same fallback as analysis/lora.ts).
 */
import { gramMat } from '../engine/kernels';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Adapter, LoraModule } from '../formats/adapter';
import { DType, dtypeEpsilon, fromFloats } from '../formats/dtype';
import { CancelToken, FormatError, throwIfCancelled } from '../formats/errors';
import { openAdapter } from '../formats/open';
import { PEFT_CONFIG } from '../formats/peft';
import { cholesky, householderQRColumns, svd, singularValues, conditionNumber } from '../linalg/decomp';
import { Mat, mat, matmul, transpose, scaleCols, scaleRows } from '../linalg/dense';
import type { Engine } from '../engine/ort';
import { GraphBuilder } from '../engine/graph';
import { matmul64 } from '../engine/products';
import { CHOLESKY_KAPPA_LIMIT } from '../analysis/lora';
import { factorHessianKappa } from './hessian';
import { OutTensor, assertNotInput, collectSideFiles, outputWeightsName, removeOutput, verifyTensorNames, writeAdapterFolder, writeFailure, writeNewFileAtomic } from '../formats/writer';
import { encodeSafetensors } from '../formats/safetensors';

// ---------------------------------------------------------------------------------------------
// Pure TypeScript version (small matrices, tests, synthetic experiment)
// ---------------------------------------------------------------------------------------------

/** Thin QR of a matrix that may be wide (rows < cols): zero rows are padded, Q is cut back. */
function thinQR(x: Mat): { Q: Mat; R: Mat } {
  const r = x.cols;
  const len = Math.max(x.rows, r);
  const cols: Float64Array[] = [];
  for (let j = 0; j < r; j++) cols.push(new Float64Array(len));
  for (let i = 0; i < x.rows; i++) for (let j = 0; j < r; j++) cols[j][i] = x.data[i * r + j];
  const { Q, R } = householderQRColumns(cols, len, true);
  if (len === x.rows) return { Q: Q!, R };
  return { Q: mat(x.rows, r, Q!.data.subarray(0, x.rows * r)), R };
}

/**
 * BaLoRA projection of one module, PEFT shapes: A r×in, B out×r. Returns balanced factors with
 * B'A' = BA and A'A'ᵀ = B'ᵀB' = diag(sigma); B = 0 gives A' = B' = 0 (as the authors' code).
 * Pure fp64 TypeScript: for small matrices only (tests, r×r work, synthetic experiments).
 */
export function balanceFactors(A: Mat, B: Mat): { A: Mat; B: Mat; sigma: Float64Array } {
  if (A.rows !== B.cols) throw new Error(`balanceFactors: A is ${A.rows}×${A.cols}, B is ${B.rows}×${B.cols}`);
  const qb = thinQR(B);
  const qa = thinQR(transpose(A));
  const core = matmul(qb.R, transpose(qa.R));
  const { U, S, V } = svd(core);
  const sq = Array.from(S, Math.sqrt);
  const Bn = matmul(qb.Q, scaleCols(U, sq));
  const An = matmul(scaleRows(transpose(V), sq), transpose(qa.Q));
  return { A: An, B: Bn, sigma: S };
}

/** ‖BᵀB − AAᵀ‖_F (absolute balancing gap of the authors' BalancingGapCallback). */
export function balanceGap(A: Mat, B: Mat): number {
  const gb = matmul(transpose(B), B);
  const ga = matmul(A, transpose(A));
  let s = 0;
  for (let i = 0; i < ga.data.length; i++) s += (gb.data[i] - ga.data[i]) ** 2;
  return Math.sqrt(s);
}

// ---------------------------------------------------------------------------------------------
// ORT-backed pieces shared by rebalance / reduce / combine
// ---------------------------------------------------------------------------------------------

/** One module's factors in PEFT orientation, fp64, row-major. */
export interface FactorPair {
  name: string;
  /** r×in */
  A: Float64Array;
  /** out×r */
  B: Float64Array;
  r: number;
  inF: number;
  outF: number;
}

function diffGraph(): Uint8Array {
  const g = new GraphBuilder('lowrank_diff');
  const a1 = g.input('a1', 'float64', ['r1', 'n']);
  const b1 = g.input('b1', 'float64', ['m', 'r1']);
  const a2 = g.input('a2', 'float64', ['r2', 'n']);
  const b2 = g.input('b2', 'float64', ['m', 'r2']);
  const s1 = g.input('s1', 'float64', [1]);
  const s2 = g.input('s2', 'float64', [1]);
  const p1 = g.op('Mul', [g.op('MatMul', [b1, a1]), s1]);
  const p2 = g.op('Mul', [g.op('MatMul', [b2, a2]), s2]);
  const d = g.op('Sub', [p2, p1]);
  g.op('ReduceMax', [g.op('Abs', [d])], { keepdims: 0 }, 'errMax');
  g.op('ReduceMax', [g.op('Abs', [p1])], { keepdims: 0 }, 'refMax');
  g.op('ReduceSumSquare', [d], { keepdims: 0 }, 'errSq');
  g.op('ReduceSumSquare', [p1], { keepdims: 0 }, 'refSq');
  const bnd = g.op('MatMul', [g.op('Abs', [b2]), g.op('Abs', [a2])]);
  g.op('ReduceMax', [g.op('Mul', [bnd, g.op('Abs', [s2])])], { keepdims: 0 }, 'bound');
  for (const o of ['errMax', 'refMax', 'errSq', 'refSq', 'bound']) g.output(o, 'float64', []);
  return g.build();
}

export interface DiffStats {
  /** max |s2·B2A2 − s1·B1A1| */
  errMax: number;
  /** max |s1·B1A1| */
  refMax: number;
  errFro: number;
  refFro: number;
  /** max (|s2|·|B2||A2|): scale of the rounding error of the product of the new factors. */
  bound: number;
}

/** Compares s2·B2A2 with s1·B1A1 (both out×in) in onnxruntime without returning the product. */
export async function lowRankDiff(engine: Engine, ref: { A: Float64Array; B: Float64Array; r: number; s: number }, got: { A: Float64Array; B: Float64Array; r: number; s: number }, outF: number, inF: number): Promise<DiffStats> {
  const sess = await engine.session('lowrank_diff', diffGraph);
  // ORT rejects zero-sized dims in some kernels: pad rank-0 factors with one zero column.
  const fix = (f: { A: Float64Array; B: Float64Array; r: number }) => (f.r > 0 ? f : { A: new Float64Array(inF), B: new Float64Array(outF), r: 1 });
  const x = fix(ref), y = fix(got);
  const res = await engine.run(sess, {
    a1: engine.tensor('float64', x.A, [x.r, inF]), b1: engine.tensor('float64', x.B, [outF, x.r]),
    a2: engine.tensor('float64', y.A, [y.r, inF]), b2: engine.tensor('float64', y.B, [outF, y.r]),
    s1: engine.tensor('float64', Float64Array.of(ref.s), [1]), s2: engine.tensor('float64', Float64Array.of(got.s), [1]),
  });
  const v = (k: string) => (res[k].data as Float64Array)[0];
  return { errMax: v('errMax'), refMax: v('refMax'), errFro: Math.sqrt(v('errSq')), refFro: Math.sqrt(v('refSq')), bound: v('bound') };
}

interface RInfo {
  R: Mat;
  G: Mat;
  sigma: Float64Array;
  kappa: number;
  /** Thin Q in fp64 (Householder fallback only). */
  Q?: Mat;
  method: 'cholesky-qr' | 'householder';
}

/** R (r×r upper) of the tall matrix X (len×r, row-major) from its Gram G = XᵀX, Householder fallback. */
function rFromGram(G: Mat, tall: () => Mat): RInfo {
  const R = cholesky(G);
  if (R) {
    const s = singularValues(R);
    const k = conditionNumber(s);
    if (k <= CHOLESKY_KAPPA_LIMIT) return { R, G, sigma: s, kappa: k, method: 'cholesky-qr' };
  }
  const { Q, R: Rh } = thinQR(tall());
  const s = singularValues(Rh);
  return { R: Rh, G: matmul(transpose(Rh), Rh), sigma: s, kappa: conditionNumber(s), Q, method: 'householder' };
}

/** R_A (from AAᵀ) and R_B (from BᵀB) of a module, Grams by onnxruntime. */
export async function factorRs(engine: Engine, f: FactorPair): Promise<{ a: RInfo; b: RInfo }> {
  const GA = await gramMat(engine, f.A, f.r, f.inF, 'rows');
  const GB = await gramMat(engine, f.B, f.outF, f.r, 'cols');
  const a = rFromGram(GA, () => transpose(mat(f.r, f.inF, f.A)));
  const b = rFromGram(GB, () => mat(f.outF, f.r, f.B));
  return { a, b };
}

/** Solves R X = Y for upper-triangular R (r×r); columns of Y. Zero pivots give zero rows (pseudo-solve). */
function solveUpper(R: Mat, Y: Mat): Mat {
  const n = R.rows, k = Y.cols;
  const X = mat(n, k);
  for (let c = 0; c < k; c++) {
    for (let i = n - 1; i >= 0; i--) {
      let s = Y.data[i * k + c];
      for (let j = i + 1; j < n; j++) s -= R.data[i * n + j] * X.data[j * k + c];
      const d = R.data[i * n + i];
      X.data[i * k + c] = d !== 0 ? s / d : 0;
    }
  }
  return X;
}

export interface LowRankResult {
  /** k×in */
  A: Float64Array;
  /** out×k */
  B: Float64Array;
  k: number;
  /** All r singular values of the core (of s·BA when `scale` was given, else of BA). */
  sigma: Float64Array;
  kappaA: number;
  kappaB: number;
  method: 'cholesky-qr' | 'householder';
}

/**
 * Balanced factors of the best rank-k approximation of c·B·A (k = r: exact re-factorisation).
 * `c` is folded into the core (use 1 to balance the raw factors). Products via onnxruntime.
 */
export async function balancedLowRank(engine: Engine, f: FactorPair, k: number, c = 1): Promise<LowRankResult> {
  const { a, b } = await factorRs(engine, f);
  const core = matmul(b.R, transpose(a.R));
  for (let i = 0; i < core.data.length; i++) core.data[i] *= c;
  const { U, S, V } = svd(core);
  const r = f.r;
  k = Math.max(0, Math.min(k, r));
  const sq = new Float64Array(k);
  for (let i = 0; i < k; i++) sq[i] = Math.sqrt(S[i]);
  const Uk = mat(r, k), Vk = mat(r, k);
  for (let i = 0; i < r; i++) for (let j = 0; j < k; j++) { Uk.data[i * k + j] = U.data[i * r + j] * sq[j]; Vk.data[i * k + j] = V.data[i * r + j] * sq[j]; }
  let Bn: Float64Array, An: Float64Array;
  if (k === 0) {
    Bn = new Float64Array(0); An = new Float64Array(0);
  } else {
    if (b.method === 'cholesky-qr') Bn = await matmul64(engine, f.B, f.outF, r, solveUpper(b.R, Uk).data, k);
    else Bn = await matmul64(engine, b.Q!.data, f.outF, r, Uk.data, k);
    if (a.method === 'cholesky-qr') An = await matmul64(engine, transpose(solveUpper(a.R, Vk)).data, k, r, f.A, f.inF);
    else An = await matmul64(engine, transpose(Vk).data, k, r, transpose(a.Q!).data, f.inF);
  }
  return {
    A: Float64Array.from(An), B: Float64Array.from(Bn), k, sigma: S, kappaA: a.kappa, kappaB: b.kappa,
    method: a.method === 'householder' || b.method === 'householder' ? 'householder' : 'cholesky-qr',
  };
}

/** Relative balancing gap ‖G_B − G_A‖_F / (tr G_A + tr G_B) (same definition as the report). */
export function relativeGap(GA: Mat, GB: Mat): number {
  let d = 0, t = 0;
  for (let i = 0; i < GA.data.length; i++) d += (GB.data[i] - GA.data[i]) ** 2;
  for (let i = 0; i < GA.rows; i++) t += GA.data[i * GA.rows + i] + GB.data[i * GA.rows + i];
  return t > 0 ? Math.sqrt(d) / t : 0;
}

// ---------------------------------------------------------------------------------------------
// Reading / writing module factors in their stored layout
// ---------------------------------------------------------------------------------------------

/** Reads a module's factors as fp64 in PEFT orientation (mlx transposes undone, conv flattened). */
export function readPair(adapter: Adapter, m: LoraModule): FactorPair {
  const rd = (t: LoraModule['A']): { data: Float64Array; rows: number; cols: number } => {
    const d = adapter.store.readF64(t.tensor.name);
    const s = t.tensor.shape;
    const rows = s[0], cols = s.slice(1).reduce((x, y) => x * y, 1);
    if (!t.transposed) return { data: d, rows, cols };
    return { data: transpose(mat(rows, cols, d)).data, rows: cols, cols: rows };
  };
  const A = rd(m.A), B = rd(m.B);
  for (const [t, v] of [[m.A, A.data], [m.B, B.data]] as const) {
    for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) throw new FormatError(adapter.weightsFile, `tensor "${t.tensor.name}" has NaN/Inf values; refusing to operate on it`);
  }
  return { name: m.name, A: A.data, B: B.data, r: A.rows, inF: A.cols, outF: B.rows };
}

/** Encodes fp64 PEFT-oriented factor values into the stored layout/dtype of `like`. */
export function encodeFactor(values: Float64Array, rows: number, cols: number, like: LoraModule['A'], shape?: number[], dtype?: DType): OutTensor {
  const dt = dtype ?? like.tensor.dtype;
  if (!['F64', 'F32', 'F16', 'BF16'].includes(dt)) throw new FormatError(like.tensor.file, `tensor "${like.tensor.name}" is ${dt}; surgery can write F64/F32/F16/BF16 only`);
  const v = like.transposed ? transpose(mat(rows, cols, values)).data : values;
  const sh = shape ?? (like.transposed ? [cols, rows] : [rows, cols]);
  return { name: like.tensor.name, dtype: dt as DType, shape: sh, data: fromFloats(v, dt as DType) };
}

/** Tolerance of a product of factors rounded to `dtype`, relative to max|ΔW| (see verify). */
export function productTolerance(d: DiffStats, dtype: DType): number {
  const eps = dtypeEpsilon(dtype) || 1e-16;
  return (4 * eps * d.bound + 1e-9 * d.refMax);
}

// ---------------------------------------------------------------------------------------------
// Adapter-level rebalance
// ---------------------------------------------------------------------------------------------

export interface SurgeryOptions {
  token?: CancelToken;
  onProgress?: (done: number, total: number, message: string) => void;
}

export interface RebalanceModule {
  name: string;
  rank: number;
  /** max|B'A' − BA| / max|BA| of the written (rounded) factors, computed by onnxruntime. */
  maxRelErr: number;
  /** Tolerance the check used (relative to max|BA|). */
  tolerance: number;
  /** Relative gap ‖BᵀB − AAᵀ‖_F/(‖A‖²+‖B‖²) before and after (written factors). */
  gapBefore: number;
  gapAfter: number;
  kappaABefore: number;
  kappaBBefore: number;
  kappaAAfter: number;
  kappaBAfter: number;
  /**
   * Condition number of the Hessian of ½‖s·B·A − ΔW‖² at the input factors and at the written ones
   * (hessian.ts factorHessianKappa: (σ₁(B)² + σ₁(A)²)/min(σ_r(B)², σ_r(A)²); ∞ for a rank-deficient factor).
   */
  hessianKappaBefore: number;
  hessianKappaAfter: number;
  /** Singular values of the raw product BA (unscaled). */
  sigma: number[];
  method: 'cholesky-qr' | 'householder';
}

import type { Verification } from '../../shared/verification';
export type { Verification };

export interface RebalanceResult {
  outDir: string;
  weightsFile: string;
  perModule: RebalanceModule[];
  verification: Verification;
  /** Side files of the input folder that were not copied (links, folders, big files), with the reason. */
  skippedSideFiles?: string[];
}

/** Provenance metadata written into `__metadata__`. */
export function provenance(operation: string, source: string, extra: Record<string, unknown> = {}): Record<string, string> {
  const md: Record<string, string> = { 'lora-lens.operation': operation, 'lora-lens.source': path.resolve(source), 'lora-lens.created': new Date().toISOString() };
  for (const [k, v] of Object.entries(extra)) md[`lora-lens.${k}`] = typeof v === 'string' ? v : JSON.stringify(v);
  return md;
}

/** Writes `tensors` in the input's layout: PEFT/mlx folder (config copied) or a single file. Returns the weights file. */
export function writeLike(adapter: Adapter, out: string, tensors: OutTensor[], metadata: Record<string, string>, config?: Record<string, unknown>): { out: string; weightsFile: string; skipped: string[] } {
  assertNotInput(out, adapter.path, adapter.weightsFile);
  const md = { ...adapter.store.metadata, ...metadata };
  const isDir = fs.statSync(adapter.path).isDirectory();
  // What we write is always safetensors: a legacy adapter_model.bin input gives adapter_model.safetensors.
  const weightsName = outputWeightsName(adapter.weightsFile);
  if (isDir) {
    // Side files (README, tokenizer files...): regular files inside the folder only, links never followed.
    const side = collectSideFiles(adapter.path, [PEFT_CONFIG, path.basename(adapter.weightsFile)]);
    const extra = side.files;
    const cfgFile = path.join(adapter.path, PEFT_CONFIG);
    const cfgIsPlainFile = ((): boolean => { try { return fs.lstatSync(cfgFile).isFile(); } catch { return false; } })();
    const cfg = config ?? adapter.config;
    let cfgOut = cfg;
    if (cfg && !config && cfgIsPlainFile) {
      // Keep the input config byte-for-byte when we do not change it (and it is not a link).
      extra.push({ name: PEFT_CONFIG, bytes: fs.readFileSync(cfgFile) });
      cfgOut = undefined;
    }
    if (side.skipped.length) md['lora-lens.skipped-side-files'] = side.skipped.join('; ');
    const r = writeAdapterFolder(out, cfgOut, tensors, md, { weightsName, extraFiles: extra });
    return { out: r.dir, weightsFile: r.weightsFile, skipped: side.skipped };
  }
  const target = out.endsWith('.safetensors') ? out : path.join(out, weightsName);
  let made = false;
  if (!out.endsWith('.safetensors')) {
    if (fs.existsSync(out)) throw new Error(`${out}: already exists; choose a new output folder`);
    try { fs.mkdirSync(out, { recursive: true }); } catch (e) { throw writeFailure(out, e); }
    made = true;
  }
  let wrote = false;
  try {
    writeNewFileAtomic(target, encodeSafetensors(tensors, md));
    wrote = true;
    verifyTensorNames(target, tensors.map((t) => t.name));
  } catch (e) {
    if (made) fs.rmSync(out, { recursive: true, force: true }); else if (wrote) fs.rmSync(target, { force: true });
    throw e;
  }
  return { out, weightsFile: target, skipped: [] };
}

/** Raw copies of every non-factor tensor, in file order. */
export function otherTensorsRaw(adapter: Adapter): OutTensor[] {
  return adapter.otherTensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: adapter.store.readRaw(t.name) }));
}

/** Orders output tensors as in the input file (by byte offset). */
export function inFileOrder(adapter: Adapter, ts: OutTensor[]): OutTensor[] {
  const off = (n: string) => adapter.store.tensors.get(n)?.offset ?? Number.MAX_SAFE_INTEGER;
  return [...ts].sort((a, b) => off(a.name) - off(b.name));
}

/**
 * Projects every module onto the balanced manifold B'ᵀB' = A'A'ᵀ keeping B'A' = BA, writes a NEW
 * adapter in the same format and dtype, reopens it and verifies every module's product; on
 * failure the output is deleted and an error is thrown.
 */
export async function rebalanceAdapter(adapter: Adapter, engine: Engine, outDir: string, opts: SurgeryOptions = {}): Promise<RebalanceResult> {
  const mods = adapter.modules;
  const tensors: OutTensor[] = [];
  const before = new Map<string, { f: FactorPair; res: LowRankResult; gap: number; hessianKappa: number }>();
  let done = 0;
  for (const m of mods) {
    throwIfCancelled(opts.token);
    const f = readPair(adapter, m);
    const { a, b } = await factorRs(engine, f);
    const res = await balancedLowRank(engine, f, f.r, 1);
    before.set(m.name, { f, res, gap: relativeGap(a.G, b.G), hessianKappa: factorHessianKappa(b.sigma, a.sigma, f.outF, f.inF) });
    // DoRA/conv: the stored shape is kept (conv kernels are flattened views of the same data).
    tensors.push(encodeFactor(res.A, f.r, f.inF, m.A, m.A.tensor.shape));
    tensors.push(encodeFactor(res.B, f.outF, f.r, m.B, m.B.tensor.shape));
    opts.onProgress?.(++done, mods.length * 2, `balanced ${m.name}`);
  }
  const all = inFileOrder(adapter, [...tensors, ...otherTensorsRaw(adapter)]);
  const md = provenance('balora-rebalance', adapter.path, { algorithm: 'BaLoRA ProjectionCallback (old): B=Q_B U S^1/2, A=S^1/2 V^T Q_A^T', modules: mods.length });
  const written = writeLike(adapter, outDir, all, md);
  try {
    const re = openAdapter(written.out);
    try {
      const perModule: RebalanceModule[] = [];
      const ver: Verification = { maxAbsError: 0, maxRelError: 0, tolerance: 0, checked: 0, what: "reopened; every module's s·B'A' against the input's s·BA (fp64, onnxruntime)" };
      for (const m2 of re.modules) {
        throwIfCancelled(opts.token);
        const b = before.get(m2.name);
        if (!b) throw new Error(`verification: module ${m2.name} is not in the input`);
        const f2 = readPair(re, m2);
        const d = await lowRankDiff(engine, { A: b.f.A, B: b.f.B, r: b.f.r, s: 1 }, { A: f2.A, B: f2.B, r: f2.r, s: 1 }, f2.outF, f2.inF);
        // Mixed-precision factors (a legacy .bin with F32 A and F16 B): the coarser dtype sets the tolerance.
        const dt = dtypeEpsilon(m2.B.tensor.dtype) > dtypeEpsilon(m2.A.tensor.dtype) ? m2.B.tensor.dtype : m2.A.tensor.dtype;
        const tol = d.refMax > 0 ? productTolerance(d, dt) / d.refMax : 0;
        const rel = d.refMax > 0 ? d.errMax / d.refMax : d.errMax;
        if (!(rel <= tol) && !(d.refMax === 0 && d.errMax === 0)) {
          throw new Error(`verification failed for ${m2.name}: max|B'A' − BA|/max|BA| = ${rel.toExponential(3)} > ${tol.toExponential(3)} (${dt})`);
        }
        ver.maxAbsError = Math.max(ver.maxAbsError, d.errMax * Math.abs(m2.scale));
        ver.maxRelError = Math.max(ver.maxRelError, rel);
        ver.tolerance = Math.max(ver.tolerance, tol);
        ver.checked++;
        const after = await factorRs(engine, f2);
        perModule.push({
          name: m2.name, rank: f2.r, maxRelErr: rel, tolerance: tol, gapBefore: b.gap, gapAfter: relativeGap(after.a.G, after.b.G),
          kappaABefore: b.res.kappaA, kappaBBefore: b.res.kappaB, kappaAAfter: after.a.kappa, kappaBAfter: after.b.kappa,
          hessianKappaBefore: b.hessianKappa, hessianKappaAfter: factorHessianKappa(after.b.sigma, after.a.sigma, f2.outF, f2.inF),
          sigma: Array.from(b.res.sigma), method: b.res.method,
        });
        opts.onProgress?.(++done, mods.length * 2, `verified ${m2.name}`);
      }
      if (perModule.length !== mods.length) throw new Error(`verification: ${perModule.length} modules written, ${mods.length} expected`);
      return { outDir: written.out, weightsFile: written.weightsFile, perModule, verification: ver, skippedSideFiles: written.skipped };
    } finally {
      re.store.close();
    }
  } catch (e) {
    removeOutput(fs.statSync(adapter.path).isDirectory() || !written.out.endsWith('.safetensors') ? written.out : written.weightsFile);
    throw e;
  }
}
