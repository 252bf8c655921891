/**
 * Synthetic BaLoRA experiment (papers.md §1.6, paper Fig. 3), pure TS fp64.
 *
 * PAPER convention here (§1.1 letter swap): loss ½‖W0 + A B − T‖²_F, A n×r ("left", init 0),
 * B r×m ("right", init N(0,1)). Update: sign-like g/(|g|+1e-8) (no momentum) or plain GD.
 * BaLoRA: after each step, (A, B) ← canonical balanced factorisation of A·B
 * (A = U√Σ, B = √Σ Vᵀ from the rank-r SVD) — equal to the §1.2 projection.
 * As the authors' synthetic_loss.py: the target T and the frozen W0 are drawn ONCE (per seed) and
 * shared by every trajectory; only the LoRA init B0 changes from one trajectory to the next. For
 * each trajectory the lr is picked from linspace(1e-5, 0.3, 50) by lowest final loss; the result is
 * the median over trajectories of loss − opt, opt = ½ Σ_{i>r} s_i(T − W0)².
 *
 * Random draws (Rng(seed), mulberry32 + Box–Muller): T (n·m normals), W0 (n·m), then B0 (r·m) per
 * trajectory, all row-major (test/fixtures/trust/gen_synthetic.py replays the same stream in numpy).
 */
import { Rng } from '../util/rng';
import { singularValues } from '../linalg/decomp';
import { mat, Mat } from '../linalg/dense';
import { balanceProject } from './balance';

export interface SyntheticOptions {
  n?: number;
  m?: number;
  r?: number;
  steps?: number;
  trajectories?: number;
  lrs?: number[];
  update?: 'sign' | 'gd';
  seed?: number;
}

export interface SyntheticResult {
  /** Median over trajectories of the excess loss per step (index 0 = before any step), best lr per trajectory. */
  lora: Float64Array;
  balora: Float64Array;
  bestLr: { lora: number[]; balora: number[] };
}

export const linspace = (a: number, b: number, k: number): number[] => Array.from({ length: k }, (_, i) => a + ((b - a) * i) / (k - 1));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/** Excess-loss trajectory of one run (length steps+1). */
export function syntheticRun(E: Mat, B0: Float64Array, r: number, lr: number, steps: number, update: 'sign' | 'gd', balanced: boolean, opt: number): Float64Array {
  const n = E.rows, m = E.cols;
  let A: Float64Array = new Float64Array(n * r); // paper A (left), init 0
  let B: Float64Array = Float64Array.from(B0); // paper B (right) r×m
  const R = new Float64Array(n * m), gA = new Float64Array(n * r), gB = new Float64Array(r * m);
  const traj = new Float64Array(steps + 1);
  const lossAndResidual = (): number => {
    let l = 0;
    for (let i = 0; i < n; i++)
      for (let j = 0; j < m; j++) {
        let s = -E.data[i * m + j]; // residual W0 + AB − T = AB − E, E = T − W0
        for (let k = 0; k < r; k++) s += A[i * r + k] * B[k * m + j];
        R[i * m + j] = s;
        l += s * s;
      }
    return 0.5 * l;
  };
  const upd = (g: number): number => (update === 'sign' ? g / (Math.abs(g) + 1e-8) : g);
  traj[0] = lossAndResidual() - opt;
  for (let t = 1; t <= steps; t++) {
    // gA = R Bᵀ, gB = Aᵀ R
    for (let i = 0; i < n; i++)
      for (let k = 0; k < r; k++) {
        let s = 0;
        for (let j = 0; j < m; j++) s += R[i * m + j] * B[k * m + j];
        gA[i * r + k] = s;
      }
    for (let k = 0; k < r; k++)
      for (let j = 0; j < m; j++) {
        let s = 0;
        for (let i = 0; i < n; i++) s += A[i * r + k] * R[i * m + j];
        gB[k * m + j] = s;
      }
    for (let i = 0; i < A.length; i++) A[i] -= lr * upd(gA[i]);
    for (let i = 0; i < B.length; i++) B[i] -= lr * upd(gB[i]);
    const big = (x: number): boolean => !(Math.abs(x) < 1e100);
    if (A.some(big) || B.some(big)) {
      traj.fill(Infinity, t); // diverged
      return traj;
    }
    if (balanced) {
      // paper A (n×r) = PEFT B; paper B (r×m) = PEFT A
      const p = balanceProject(mat(r, m, B), mat(n, r, A));
      A = p.B.data;
      B = p.A.data;
    }
    const l = lossAndResidual();
    traj[t] = Number.isFinite(l) ? l - opt : Infinity;
  }
  return traj;
}

export function runSynthetic(o: SyntheticOptions = {}): SyntheticResult {
  const n = o.n ?? 20, m = o.m ?? 20, r = o.r ?? 4, steps = o.steps ?? 100, K = o.trajectories ?? 8;
  const lrs = o.lrs ?? linspace(1e-5, 0.3, 50);
  const update = o.update ?? 'sign';
  const rng = new Rng(o.seed ?? 44);
  const res: Record<'lora' | 'balora', Float64Array[]> = { lora: [], balora: [] };
  const bestLr = { lora: [] as number[], balora: [] as number[] };
  // T and W0 fixed for the whole experiment; only B0 varies per trajectory.
  const T = rng.normals(n * m), W0 = rng.normals(n * m);
  const E = mat(n, m, T.map((x, i) => x - W0[i]));
  const sv = singularValues(E);
  let opt = 0;
  for (let i = r; i < sv.length; i++) opt += 0.5 * sv[i] * sv[i];
  for (let k = 0; k < K; k++) {
    const B0 = rng.normals(r * m);
    for (const kind of ['lora', 'balora'] as const) {
      let best: Float64Array | undefined, bestL = 0;
      for (const lr of lrs) {
        const tr = syntheticRun(E, B0, r, lr, steps, update, kind === 'balora', opt);
        if (!best || tr[steps] < best[steps]) { best = tr; bestL = lr; }
      }
      res[kind].push(best!);
      bestLr[kind].push(bestL);
    }
  }
  const med = (xs: Float64Array[]): Float64Array => Float64Array.from({ length: steps + 1 }, (_, t) => median(xs.map((x) => x[t])));
  return { lora: med(res.lora), balora: med(res.balora), bestLr };
}
