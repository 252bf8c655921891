/**
 * Similarity of LoRA adapters that does not depend on how ΔW = s·B·A is split into B and A
 * (B → B·G, A → G⁻¹·A leave every number here unchanged; cosines of flattened A and B do not).
 *
 * Per module shared by adapters i and j (same name, same ΔW shape), from r×r products only:
 *   ⟨ΔW_i, ΔW_j⟩_F = s_i s_j · tr((B_iᵀB_j)(A_j A_iᵀ)),   ‖ΔW_i‖_F² = s_i² · tr((B_iᵀB_i)(A_i A_iᵀ))
 *   cosine = ⟨ΔW_i, ΔW_j⟩ / (‖ΔW_i‖‖ΔW_j‖)  (signed, in [−1, 1])
 *   principal angles between the column spaces (and the row spaces) of ΔW_i and ΔW_j.
 * The column space of ΔW is spanned by its left singular vectors with σ > τ·σ₁ (τ = 1e-6).
 * With B_iᵀB_i = V Λ Vᵀ, Q_B = B·V·Λ^{-1/2} is an orthonormal basis of col(B) and
 * ΔW = Q_B (s Λ^{1/2}Vᵀ T_Aᵀ) Q_Aᵀ, so the left singular vectors of ΔW are B·L with
 * L = VΛ^{-1/2}U (U from the SVD of the small core); likewise the right ones are Aᵀ·R. The cosines
 * of the principal angles are the singular values of L_iᵀ(B_iᵀB_j)L_j (resp. R_iᵀ(A_iA_jᵀ)R_j).
 *
 * The only products touching full factors are the Gram matrices of the stacked factors
 * [B_1ᵀ; …; B_Nᵀ] and [A_1; …; A_N] of a module (one batched onnxruntime run per shape, fp64
 * accumulation): every cross product B_iᵀB_j and A_iA_jᵀ is a block of them. Everything else is
 * (Σr)×(Σr) or smaller, in fp64 TypeScript.
 *
 * Adapter-level matrix (entries in [0, 1]; 1 = the same ΔW up to a per-module factor on every
 * shared module): the energy-weighted |cosine| over the modules both adapters have (and where both
 * ΔW ≠ 0):   S_ij = Σ_m |⟨ΔW_i,m, ΔW_j,m⟩| / Σ_m ‖ΔW_i,m‖‖ΔW_j,m‖,   S_ii = 1.
 * That is the mean of |cos_m| weighted by ‖ΔW_i,m‖‖ΔW_j,m‖, so modules that carry the change count
 * most. S_ij = 0 when the adapters share no non-zero module. `signed` drops the absolute values
 * (Σ⟨·,·⟩ / Σ‖·‖‖·‖ = cosine of the concatenated shared ΔWs); `columnSpace` / `rowSpace` weight
 * the per-module subspace overlaps (mean cos² of the principal angles) the same way.
 */
import type { Adapter, LoraModule } from '../formats/adapter';
import type { Engine } from '../engine/ort';
import { batchedGram, MAX_RUN_ELEMENTS } from '../engine/products';
import { svd, symEig } from '../linalg/decomp';
import { Mat, mat, matmul, transpose } from '../linalg/dense';
import { countNonFinite } from '../formats/dtype';
import type { CancelToken } from '../formats/errors';
import { throwIfCancelled } from '../formats/errors';
import type { ModuleSimilarity, SimilarityAdapter, SimilarityPair, SimilarityResult } from '../../shared/similarity';

/** Relative threshold on σ(ΔW) (and on σ of each factor) defining the numerical column/row space. */
export const SUBSPACE_TOL = 1e-6;

export type { ModuleSimilarity, SimilarityAdapter, SimilarityPair, SimilarityResult };

export const AGGREGATION = 'energy-weighted |cos|: S_ij = Σ_m |⟨ΔW_i,m, ΔW_j,m⟩_F| / Σ_m ‖ΔW_i,m‖_F‖ΔW_j,m‖_F over the modules both adapters have (same name and shape, both non-zero); S_ii = 1; 0 when none is shared';

interface Member {
  k: number; // adapter index
  module: LoraModule;
  scale: number;
  r: number;
}

interface Group {
  name: string;
  out: number;
  inn: number;
  members: Member[];
}

/** Factor of a module as a row-major r×dim matrix: A (r×in) or Bᵀ (r×out); exact (F64 factors stay fp64). */
function factorRows(adapter: Adapter, m: LoraModule, role: 'A' | 'B'): Float32Array | Float64Array {
  const f = m[role];
  const v = f.tensor.dtype === 'F64' ? adapter.store.readF64(f.tensor.name) : adapter.store.readF32(f.tensor.name);
  const r = m.rank;
  const dim = v.length / r;
  // PEFT: A [r, in] is already r×in; B [out, r] needs a transpose. mlx stores the transposes.
  const needT = role === 'A' ? f.transposed : !f.transposed;
  if (!needT) return v;
  const out = v instanceof Float64Array ? new Float64Array(v.length) : new Float32Array(v.length);
  for (let i = 0; i < dim; i++) for (let j = 0; j < r; j++) out[j * dim + i] = v[i * r + j];
  return out;
}

function block(G: Float64Array, R: number, oi: number, ri: number, oj: number, rj: number): Mat {
  const b = mat(ri, rj);
  for (let a = 0; a < ri; a++) for (let c = 0; c < rj; c++) b.data[a * rj + c] = G[(oi + a) * R + oj + c];
  return b;
}

/** tr(X·Y) for X p×q, Y q×p. */
function traceProduct(X: Mat, Y: Mat): number {
  let t = 0;
  for (let a = 0; a < X.rows; a++) for (let c = 0; c < X.cols; c++) t += X.data[a * X.cols + c] * Y.data[c * Y.cols + a];
  return t;
}

/** Orthonormalising map of a factor from its Gram G = XXᵀ (X = the r×dim factor rows): P (r×k) and T = Λ^{1/2}Vᵀ (k×r). */
function basisOf(G: Mat): { P: Mat; T: Mat } {
  const { values, vectors } = symEig(G);
  const r = G.rows;
  const lmax = values[0] ?? 0;
  let k = 0;
  while (k < r && values[k] > 0 && values[k] > lmax * SUBSPACE_TOL * SUBSPACE_TOL) k++;
  const P = mat(r, k), T = mat(k, r);
  for (let c = 0; c < k; c++) {
    const sq = Math.sqrt(values[c]);
    for (let a = 0; a < r; a++) {
      const v = vectors.data[a * r + c];
      P.data[a * k + c] = v / sq;
      T.data[c * r + a] = v * sq;
    }
  }
  return { P, T };
}

interface Spaces {
  /** r×k: left singular vectors of ΔW = B·L. */
  L: Mat;
  /** r×k: right singular vectors = Aᵀ·R. */
  R: Mat;
  sigma: Float64Array;
  k: number;
}

function spacesOf(GB: Mat, GA: Mat, s: number): Spaces {
  const b = basisOf(GB), a = basisOf(GA);
  const r = GB.rows;
  if (b.T.rows === 0 || a.T.rows === 0) return { L: mat(r, 0), R: mat(r, 0), sigma: new Float64Array(0), k: 0 };
  const core = matmul(b.T, transpose(a.T));
  for (let i = 0; i < core.data.length; i++) core.data[i] *= s;
  const d = svd(core);
  const s1 = d.S[0] ?? 0;
  let k = 0;
  while (k < d.S.length && d.S[k] > s1 * SUBSPACE_TOL && d.S[k] > 0) k++;
  const take = (M: Mat): Mat => {
    const o = mat(M.rows, k);
    for (let i = 0; i < M.rows; i++) for (let c = 0; c < k; c++) o.data[i * k + c] = M.data[i * M.cols + c];
    return o;
  };
  return { L: matmul(b.P, take(d.U)), R: matmul(a.P, take(d.V)), sigma: d.S.slice(0, k), k };
}

function principalCosines(Li: Mat, cross: Mat, Lj: Mat): number[] {
  if (Li.cols === 0 || Lj.cols === 0) return [];
  const M = matmul(matmul(transpose(Li), cross), Lj);
  return Array.from(svd(M, { wantU: false, wantV: false }).S).slice(0, Math.min(Li.cols, Lj.cols)).map((c) => Math.min(1, Math.max(0, c)));
}

const deg = (c: number): number => (Math.acos(Math.min(1, Math.max(-1, c))) * 180) / Math.PI;
const meanSq = (c: number[]): number => (c.length ? c.reduce((a, x) => a + x * x, 0) / c.length : 0);
const square = <T>(n: number, v: T): T[][] => Array.from({ length: n }, () => Array.from({ length: n }, () => v));

export interface SimilarityOptions {
  engine: Engine;
  token?: CancelToken;
  onProgress?: (done: number, total: number) => void;
}

/** Compares N ≥ 2 adapters module by module; see the file comment for the definitions. */
export async function adapterSimilarity(adapters: Adapter[], opts: SimilarityOptions): Promise<SimilarityResult> {
  const N = adapters.length;
  const skipped: SimilarityResult['skipped'] = [];
  // Modules by name, kept only when ≥ 2 adapters have them with the same ΔW shape (dims from the
  // stored factors: conv kernels flattened).
  const byName = new Map<string, Group>();
  adapters.forEach((ad, k) => {
    for (const m of ad.modules) {
      const r = m.rank;
      const out = m.B.tensor.numel / r, inn = m.A.tensor.numel / r;
      const g = byName.get(m.name);
      if (!g) byName.set(m.name, { name: m.name, out, inn, members: [{ k, module: m, scale: m.scale, r }] });
      else if (g.out !== out || g.inn !== inn) skipped.push({ module: m.name, adapter: ad.name, reason: `ΔW shape [${out}, ${inn}] differs from [${g.out}, ${g.inn}] in ${adapters[g.members[0].k].name}` });
      else g.members.push({ k, module: m, scale: m.scale, r });
    }
  });
  const groups = [...byName.values()].filter((g) => g.members.length >= 2);

  const ip = square(N, 0), absIp = square(N, 0), nn = square(N, 0), cw = square(N, 0), rw = square(N, 0), shared = square(N, 0);
  const modules: Record<string, ModuleSimilarity> = {};
  // Batch modules of equal (Σr, out, in) into one ORT run per factor side.
  const batches = new Map<string, Group[]>();
  for (const g of groups) {
    const R = g.members.reduce((a, m) => a + m.r, 0);
    const key = `${R}:${g.out}:${g.inn}`;
    const b = batches.get(key);
    if (b) b.push(g); else batches.set(key, [g]);
  }
  let done = 0;
  for (const [key, list] of batches) {
    const [R, out, inn] = key.split(':').map(Number);
    const chunk = Math.max(1, Math.floor(MAX_RUN_ELEMENTS / (R * Math.max(out, inn))));
    for (let start = 0; start < list.length; start += chunk) {
      throwIfCancelled(opts.token);
      await new Promise<void>((res) => setImmediate(res));
      const part = list.slice(start, start + chunk);
      // fp64 stacks when any factor is F64 (kept exact), fp32 otherwise (fp32 values are exact in
      // fp32; ORT accumulates the Grams in fp64 either way).
      const f64 = part.some((g) => g.members.some((m) => m.module.A.tensor.dtype === 'F64' || m.module.B.tensor.dtype === 'F64'));
      const Bs = f64 ? new Float64Array(part.length * R * out) : new Float32Array(part.length * R * out);
      const As = f64 ? new Float64Array(part.length * R * inn) : new Float32Array(part.length * R * inn);
      const bad = part.map(() => new Set<number>());
      part.forEach((g, gi) => {
        let o = 0;
        for (const m of g.members) {
          const ad = adapters[m.k];
          const bt = factorRows(ad, m.module, 'B'), a = factorRows(ad, m.module, 'A');
          const nb = countNonFinite(bt), na = countNonFinite(a);
          if (nb.nan + nb.inf + na.nan + na.inf > 0) {
            bad[gi].add(m.k);
            skipped.push({ module: g.name, adapter: ad.name, reason: 'NaN/Inf in a factor' });
          } else {
            Bs.set(bt, (gi * R + o) * out);
            As.set(a, (gi * R + o) * inn);
          }
          o += m.r;
        }
      });
      const GBall = await batchedGram(opts.engine, Bs, part.length, R, out, 'rows');
      const GAall = await batchedGram(opts.engine, As, part.length, R, inn, 'rows');
      part.forEach((g, gi) => {
        const GB = GBall.subarray(gi * R * R, (gi + 1) * R * R), GA = GAall.subarray(gi * R * R, (gi + 1) * R * R);
        const offs: number[] = [];
        let o = 0;
        for (const m of g.members) { offs.push(o); o += m.r; }
        const live = g.members.map((m, x) => ({ m, o: offs[x] })).filter((e) => !bad[gi].has(e.m.k));
        const norms: (number | null)[] = Array(N).fill(null), ranks: (number | null)[] = Array(N).fill(null);
        const sp = new Map<number, Spaces>();
        for (const { m, o: oi } of live) {
          const gbb = block(GB, R, oi, m.r, oi, m.r), gaa = block(GA, R, oi, m.r, oi, m.r);
          norms[m.k] = Math.abs(m.scale) * Math.sqrt(Math.max(0, traceProduct(gbb, gaa)));
          const s = spacesOf(gbb, gaa, m.scale);
          sp.set(m.k, s);
          ranks[m.k] = s.k;
        }
        const ms: ModuleSimilarity = {
          shape: [g.out, g.inn], norms, ranks, matrix: square(N, null), cosine: square(N, null), colOverlap: square(N, null), rowOverlap: square(N, null), pairs: [],
        };
        for (const { m } of live) if (norms[m.k]! > 0) { ms.matrix[m.k][m.k] = 1; ms.cosine[m.k][m.k] = 1; ms.colOverlap[m.k][m.k] = 1; ms.rowOverlap[m.k][m.k] = 1; }
        for (let x = 0; x < live.length; x++) {
          for (let y = x + 1; y < live.length; y++) {
            const a = live[x], b = live[y];
            const i = a.m.k, j = b.m.k;
            const ni = norms[i]!, nj = norms[j]!;
            if (!(ni > 0) || !(nj > 0)) continue;
            const BiBj = block(GB, R, a.o, a.m.r, b.o, b.m.r); // B_iᵀB_j
            const AjAi = block(GA, R, b.o, b.m.r, a.o, a.m.r); // A_j A_iᵀ
            const inner = a.m.scale * b.m.scale * traceProduct(BiBj, AjAi);
            const cos = Math.max(-1, Math.min(1, inner / (ni * nj)));
            const si = sp.get(i)!, sj = sp.get(j)!;
            const colC = principalCosines(si.L, BiBj, sj.L);
            const rowC = principalCosines(si.R, transpose(AjAi), sj.R);
            const pair: SimilarityPair = {
              i, j, cosine: cos, colCosines: colC, rowCosines: rowC, colAnglesDeg: colC.map(deg), rowAnglesDeg: rowC.map(deg),
              colOverlap: meanSq(colC), rowOverlap: meanSq(rowC),
            };
            ms.pairs.push(pair);
            for (const [p, q] of [[i, j], [j, i]]) {
              ms.matrix[p][q] = Math.abs(cos); ms.cosine[p][q] = cos; ms.colOverlap[p][q] = pair.colOverlap; ms.rowOverlap[p][q] = pair.rowOverlap;
              ip[p][q] += inner; nn[p][q] += ni * nj; cw[p][q] += ni * nj * pair.colOverlap; rw[p][q] += ni * nj * pair.rowOverlap; shared[p][q]++;
            }
            absIp[i][j] += Math.abs(inner); absIp[j][i] += Math.abs(inner);
          }
        }
        modules[g.name] = ms;
      });
      done += part.length;
      opts.onProgress?.(done, groups.length);
    }
  }
  const matrix = square(N, 0), signed = square(N, 0), columnSpace = square(N, 0), rowSpace = square(N, 0);
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < N; j++) {
      if (i === j) { matrix[i][j] = signed[i][j] = columnSpace[i][j] = rowSpace[i][j] = 1; shared[i][j] = adapters[i].modules.length; continue; }
      if (nn[i][j] > 0) {
        matrix[i][j] = Math.min(1, absIp[i][j] / nn[i][j]);
        signed[i][j] = Math.max(-1, Math.min(1, ip[i][j] / nn[i][j]));
        columnSpace[i][j] = Math.min(1, cw[i][j] / nn[i][j]);
        rowSpace[i][j] = Math.min(1, rw[i][j] / nn[i][j]);
      }
    }
  }
  return {
    adapters: adapters.map((a) => ({ path: a.path, name: a.name, format: a.format, modules: a.modules.length })),
    matrix, signed, columnSpace, rowSpace, shared, aggregation: AGGREGATION, tolerance: SUBSPACE_TOL, modules, skipped,
    notes: adapters.filter((a) => a.modules.some((m) => m.magnitude)).map((a) => `${a.name}: DoRA magnitude vectors are not included; its ΔW is taken as s·B·A`),
  };
}
