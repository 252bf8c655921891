/**
 * Batched products on full factor/weight matrices, run by onnxruntime.
 */
import type { Engine } from './ort';
import { GraphBuilder } from './graph';

export type GramSide = 'rows' | 'cols';

/**
 * Largest number of input elements sent in one run (2 MB of fp32, 4 MB once cast to fp64): bounds
 * the scratch memory and keeps each run's fp64 intermediates cache-sized. Was 16 M (64 MB): the
 * first analysis in a process then spent ~0.2 s of system time faulting in ORT's ~300 MB arena,
 * with no gain afterwards (Llama-8B-shaped r16 adapter, 2026-11-30: 458 → 295 ms CPU first run,
 * 274–300 → 271–299 ms later runs; bench/fleet.ts).
 */
export const MAX_RUN_ELEMENTS = 512 * 1024;

function gramGraph(side: GramSide, input: 'float32' | 'float64'): Uint8Array {
  const g = new GraphBuilder(`gram_${side}_${input}`);
  const x = g.input('x', input, ['L', 'p', 'q']);
  const xd = input === 'float64' ? x : g.op('Cast', [x], { to: 11 });
  const xt = g.op('Transpose', [xd], { perm: [0, 2, 1] });
  g.op('MatMul', side === 'cols' ? [xt, xd] : [xd, xt], {}, 'y');
  g.output('y', 'float64', ['L', 'k', 'k']);
  return g.build();
}

/**
 * Gram matrices of L stacked p×q matrices (row-major, fp32 or fp64), computed in fp64:
 * side 'cols' gives XᵀX (q×q), side 'rows' gives XXᵀ (p×p). Returns L·k·k doubles.
 */
export async function batchedGram(engine: Engine, stacked: Float32Array | Float64Array, L: number, p: number, q: number, side: GramSide): Promise<Float64Array> {
  if (stacked.length !== L * p * q) throw new Error(`batchedGram: ${stacked.length} values for ${L}×${p}×${q}`);
  const k = side === 'cols' ? q : p;
  const out = new Float64Array(L * k * k);
  const per = p * q;
  const input = stacked instanceof Float64Array ? 'float64' : 'float32';
  const session = await engine.session(`gram_${side}_${input}`, () => gramGraph(side, input));
  const tensor = (data: Float32Array | Float64Array, dims: number[]) =>
    data instanceof Float64Array ? engine.tensor('float64', data, dims) : engine.tensor('float32', data, dims);
  if (per > MAX_RUN_ELEMENTS && side === 'rows' && p >= gramTuning.symMinRows) {
    for (let b = 0; b < L; b++) out.set(await symRowsGram(engine, stacked.subarray(b * per, (b + 1) * per), p, q), b * k * k);
    return out;
  }
  if (per > MAX_RUN_ELEMENTS && side === 'cols' && q >= gramTuning.symMinRows) {
    // XᵀX = (Xᵀ)(Xᵀ)ᵀ: the rows-Gram of the transpose, built one row block of Xᵀ at a time
    // (a column block of X copied once), so memory stays ≈ the input plus two blocks.
    for (let b = 0; b < L; b++) out.set(await symRowsGram(engine, stacked.subarray(b * per, (b + 1) * per), q, p, true), b * k * k);
    return out;
  }
  if (per > MAX_RUN_ELEMENTS) {
    // One matrix larger than a run: sum the Grams of blocks along the long side (XᵀX = Σ XᵢᵀXᵢ over
    // row blocks, XXᵀ = Σ X₍:,j₎X₍:,j₎ᵀ over column blocks), so onnxruntime's fp64 cast and
    // transpose only ever hold one block — memory ≈ the input plus O(MAX_RUN_ELEMENTS) scratch,
    // not 8× a large factor (a 128k-vocabulary lm_head factor).
    const acc = new Float64Array(k * k);
    const scratch = side === 'rows' ? (input === 'float64' ? new Float64Array(MAX_RUN_ELEMENTS) : new Float32Array(MAX_RUN_ELEMENTS)) : undefined;
    for (let b = 0; b < L; b++) {
      const X = stacked.subarray(b * per, (b + 1) * per);
      acc.fill(0);
      if (side === 'cols') {
        const rows = Math.max(1, Math.floor(MAX_RUN_ELEMENTS / q));
        for (let r0 = 0; r0 < p; r0 += rows) {
          const n = Math.min(rows, p - r0);
          const res = await engine.run(session, { x: tensor(X.subarray(r0 * q, (r0 + n) * q), [1, n, q]) });
          const y = res.y.data as Float64Array;
          for (let i = 0; i < acc.length; i++) acc[i] += y[i];
          res.y.dispose?.();
        }
      } else {
        const cols = Math.max(1, Math.floor(MAX_RUN_ELEMENTS / p));
        for (let c0 = 0; c0 < q; c0 += cols) {
          const n = Math.min(cols, q - c0);
          const blk = scratch!.subarray(0, p * n);
          for (let i = 0; i < p; i++) blk.set(X.subarray(i * q + c0, i * q + c0 + n), i * n);
          const res = await engine.run(session, { x: tensor(blk, [1, p, n]) });
          const y = res.y.data as Float64Array;
          for (let i = 0; i < acc.length; i++) acc[i] += y[i];
          res.y.dispose?.();
        }
      }
      out.set(acc, b * k * k);
    }
    return out;
  }
  const chunk = Math.max(1, Math.floor(MAX_RUN_ELEMENTS / per));
  for (let start = 0; start < L; start += chunk) {
    const n = Math.min(chunk, L - start);
    const res = await engine.run(session, { x: tensor(stacked.subarray(start * per, (start + n) * per), [n, p, q]) });
    out.set(res.y.data as Float64Array, start * k * k);
    res.y.dispose?.();
  }
  return out;
}

/** From `symMinRows` rows on, a large rows-Gram uses the symmetric row-block route (symRowsGram); benches set it to Infinity to time the column-block route. */
export const gramTuning = { symMinRows: 512 };

function blockGramGraph(input: 'float32' | 'float64'): Uint8Array {
  // y = a·bᵀ in fp64 (a p×n, b q×n row blocks of the same matrix)
  const g = new GraphBuilder(`gram_block_${input}`);
  g.input('a', input, ['p', 'n']);
  g.input('b', input, ['q', 'n']);
  const d = (x: string): string => (input === 'float64' ? x : g.op('Cast', [x], { to: 11 }));
  g.op('Gemm', [d('a'), d('b')], { transB: 1 }, 'y');
  g.output('y', 'float64', ['p', 'q']);
  return g.build();
}

/**
 * X·Xᵀ (p×p, fp64) of one large row-major p×q matrix by row blocks: G_ij = X_i·X_jᵀ for i ≥ j
 * only (about half the flops of the full product), each block written once. The column-block
 * reduction below would instead return and sum a full p×p fp64 product per 128-column block
 * (4096²: 32 outputs of 134 MB — most of the Gram's time here, fresh output pages cost ~1 ms/MB).
 * Row blocks are contiguous subarrays (no copies); a run holds two blocks of ≤ 4·MAX_RUN_ELEMENTS.
 */
async function symRowsGram(engine: Engine, X: Float32Array | Float64Array, p: number, q: number, transposed = false): Promise<Float64Array> {
  const input = X instanceof Float64Array ? 'float64' : 'float32';
  const session = await engine.session(`gram_block_${input}`, () => blockGramGraph(input));
  const tensor = (data: Float32Array | Float64Array, dims: number[]) =>
    data instanceof Float64Array ? engine.tensor('float64', data, dims) : engine.tensor('float32', data, dims);
  const rb = Math.max(64, Math.min(p, Math.floor((4 * MAX_RUN_ELEMENTS) / q)));
  // transposed: X is stored q×p row-major and the Gram is of its transpose (p×q); row block i of
  // Xᵀ = column block i of X, copied into a contiguous buffer (two buffers: blocks i and j).
  const bufA = transposed ? (input === 'float64' ? new Float64Array(rb * q) : new Float32Array(rb * q)) : undefined;
  const bufB = transposed ? (input === 'float64' ? new Float64Array(rb * q) : new Float32Array(rb * q)) : undefined;
  const block = (i0: number, n: number, buf?: Float32Array | Float64Array): Float32Array | Float64Array => {
    if (!transposed) return X.subarray(i0 * q, (i0 + n) * q);
    const dst = buf!.subarray(0, n * q);
    for (let t = 0; t < q; t++) { const o = t * p + i0; for (let c = 0; c < n; c++) dst[c * q + t] = X[o + c]; }
    return dst;
  };
  const G = new Float64Array(p * p);
  for (let i0 = 0; i0 < p; i0 += rb) {
    const ni = Math.min(rb, p - i0);
    const ablk = block(i0, ni, bufA);
    const a = tensor(ablk, [ni, q]);
    for (let j0 = 0; j0 <= i0; j0 += rb) {
      const nj = Math.min(rb, p - j0);
      const bblk = transposed && j0 === i0 ? ablk : block(j0, nj, bufB);
      const res = await engine.run(session, { a, b: tensor(bblk, [nj, q]) });
      const y = res.y.data as Float64Array;
      for (let r = 0; r < ni; r++) {
        const gi = (i0 + r) * p + j0;
        G.set(y.subarray(r * nj, (r + 1) * nj), gi);
        if (j0 !== i0) for (let c = 0; c < nj; c++) G[(j0 + c) * p + i0 + r] = y[r * nj + c];
      }
      res.y.dispose?.();
    }
  }
  return G;
}

function matmulGraph(t: 'float32' | 'float64'): Uint8Array {
  const g = new GraphBuilder(`matmul_${t}`);
  const a = g.input('a', t, ['m', 'k']);
  const b = g.input('b', t, ['k', 'n']);
  g.op('MatMul', [a, b], {}, 'y');
  g.output('y', t, ['m', 'n']);
  return g.build();
}

/** Plain product A·B of row-major matrices through onnxruntime. */
export async function matmul(engine: Engine, a: Float32Array, m: number, k: number, b: Float32Array, n: number): Promise<Float32Array> {
  const s = await engine.session('matmul_float32', () => matmulGraph('float32'));
  const res = await engine.run(s, { a: engine.tensor('float32', a, [m, k]), b: engine.tensor('float32', b, [k, n]) });
  return res.y.data as Float32Array;
}

export async function matmul64(engine: Engine, a: Float64Array, m: number, k: number, b: Float64Array, n: number): Promise<Float64Array> {
  const s = await engine.session('matmul_float64', () => matmulGraph('float64'));
  const res = await engine.run(s, { a: engine.tensor('float64', a, [m, k]), b: engine.tensor('float64', b, [k, n]) });
  return res.y.data as Float64Array;
}
