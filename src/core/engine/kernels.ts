/**
 * The ONNX kernels shared by analysis, surgery and the base-model analyses — one definition each:
 *   - lowRankMerge: W0 + s·B·A (optionally with ΔW = s·B·A as a second output, or ΔW transposed for
 *     GPT-2 Conv1D layouts), in fp32 or fp64;
 *   - gramMat: XᵀX / XXᵀ of one matrix in fp64 (batchedGram with L = 1, blocked for large inputs).
 * Graphs are built in memory and cached per engine by key.
 */
import { GraphBuilder } from './graph';
import type { Engine } from './ort';
import { batchedGram, type GramSide } from './products';
import { mat, type Mat } from '../linalg/dense';

export type KernelType = 'float32' | 'float64';

interface MergeVariant {
  type: KernelType;
  /** ΔW is computed in the layout of W0ᵀ (Conv1D stores W as in×out while B·A is out×in). */
  transposeDelta?: boolean;
  /** Also return ΔW (same layout as W0). */
  withDelta?: boolean;
}

function mergeKey(v: MergeVariant): string {
  return `lowrank_merge_${v.type}_${v.transposeDelta ? 't' : 'n'}${v.withDelta ? '_d' : ''}`;
}

function mergeGraph(v: MergeVariant): Uint8Array {
  const g = new GraphBuilder(mergeKey(v));
  const w = g.input('W0', v.type, ['p', 'q']);
  const b = g.input('B', v.type, ['m', 'r']);
  const a = g.input('A', v.type, ['r', 'n']);
  const s = g.input('s', v.type, [1]);
  let d = g.op('Mul', [g.op('MatMul', [b, a]), s], {}, v.transposeDelta ? undefined : 'D');
  if (v.transposeDelta) d = g.op('Transpose', [d], { perm: [1, 0] }, 'D');
  g.op('Add', [w, d], {}, 'W');
  g.output('W', v.type, ['p', 'q']);
  if (v.withDelta) g.output('D', v.type, ['p', 'q']);
  return g.build();
}

type Arr<T extends KernelType> = T extends 'float64' ? Float64Array : Float32Array;

/**
 * W = W0 + s·B·A through onnxruntime, with B m×r and A r×n row-major; W0 is m×n, or n×m with
 * `transposeDelta`. Returns W (and ΔW with `withDelta`).
 */
export async function lowRankMerge<T extends KernelType>(
  engine: Engine, type: T, W0: Arr<T>, B: Arr<T>, A: Arr<T>, m: number, r: number, n: number, s: number,
  opts: { transposeDelta?: boolean; withDelta?: boolean } = {},
): Promise<{ W: Arr<T>; D?: Arr<T> }> {
  const v: MergeVariant = { type, ...opts };
  const session = await engine.session(mergeKey(v), () => mergeGraph(v));
  const [p, q] = opts.transposeDelta ? [n, m] : [m, n];
  const t = (data: Float32Array | Float64Array, dims: number[]) =>
    type === 'float64' ? engine.tensor('float64', data as Float64Array, dims) : engine.tensor('float32', data as Float32Array, dims);
  const sv = type === 'float64' ? Float64Array.of(s) : Float32Array.of(s);
  const res = await engine.run(session, { W0: t(W0, [p, q]), B: t(B, [m, r]), A: t(A, [r, n]), s: t(sv, [1]) });
  return { W: res.W.data as Arr<T>, D: opts.withDelta ? (res.D.data as Arr<T>) : undefined };
}

/** XᵀX ('cols', q×q) or XXᵀ ('rows', p×p) of a p×q fp64 matrix, as a Mat (onnxruntime, fp64). */
export async function gramMat(engine: Engine, x: Float64Array, p: number, q: number, side: GramSide): Promise<Mat> {
  const k = side === 'cols' ? q : p;
  return mat(k, k, await batchedGram(engine, x, 1, p, q, side));
}
