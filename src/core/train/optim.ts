/**
 * AdamW inside the ONNX graph (decoupled weight decay, torch.optim.AdamW semantics):
 *
 *   m' = β1 m + (1−β1) g          v' = β2 v + (1−β2) g²
 *   p' = p − lr·wd·p − lr · (m'/(1−β1^t)) / (√(v'/(1−β2^t)) + ε)
 *
 * `step` (t, 1-based, after increment) and `lr` are scalar graph inputs, so one `session.run` does
 * forward + backward + update and the new p/m/v tensors are fed back on the next run.
 */
import type { Tape, V } from './autodiff';

export interface AdamWConfig {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export const ADAMW_DEFAULTS: AdamWConfig = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };

export class AdamWGraph {
  private readonly bc1: V;
  private readonly bc2: V;

  /** `step` and `lr` are scalar inputs of the tape's float type. */
  constructor(private readonly t: Tape, private readonly cfg: AdamWConfig, step: V, private readonly lr: V) {
    const one = t.scalar(1);
    this.bc1 = t.raw('Sub', [one, t.raw('Pow', [t.scalar(cfg.beta1), step], [])], []);
    this.bc2 = t.raw('Sqrt', [t.raw('Sub', [one, t.raw('Pow', [t.scalar(cfg.beta2), step], [])], [])], []);
  }

  /** New (p, m, v) for one parameter. `weightDecay` overrides the config (e.g. 0 for some params). */
  update(p: V, g: V, m: V, v: V, weightDecay = this.cfg.weightDecay): { p: V; m: V; v: V } {
    const t = this.t, s = [...p.shape], c = this.cfg;
    const mul = (a: V, b: V): V => t.raw('Mul', [a, b], s);
    const add = (a: V, b: V): V => t.raw('Add', [a, b], s);
    const m2 = add(mul(m, t.scalar(c.beta1)), mul(g, t.scalar(1 - c.beta1)));
    const v2 = add(mul(v, t.scalar(c.beta2)), mul(mul(g, g), t.scalar(1 - c.beta2)));
    // step size lr/bc1 and denominator √v'/√bc2 + ε (torch's formulation)
    const denom = add(t.raw('Div', [t.raw('Sqrt', [v2], s), this.bc2], s), t.scalar(c.eps));
    const stepSize = t.raw('Div', [this.lr, this.bc1], []);
    let p2 = t.raw('Sub', [p, mul(t.raw('Div', [m2, denom], s), stepSize)], s);
    if (weightDecay !== 0) p2 = t.raw('Sub', [p2, mul(p, mul(this.lr, t.scalar(weightDecay)))], s);
    return { p: p2, m: m2, v: v2 };
  }
}

/** Plain TS reference of one AdamW step (fp64), for tests. */
export function adamwReference(
  p: ArrayLike<number>, g: ArrayLike<number>, m: ArrayLike<number>, v: ArrayLike<number>, step: number, lr: number, c: AdamWConfig,
): { p: Float64Array; m: Float64Array; v: Float64Array } {
  const n = p.length, P = new Float64Array(n), M = new Float64Array(n), W = new Float64Array(n);
  const bc1 = 1 - c.beta1 ** step, bc2 = 1 - c.beta2 ** step;
  for (let i = 0; i < n; i++) {
    M[i] = c.beta1 * m[i] + (1 - c.beta1) * g[i];
    W[i] = c.beta2 * v[i] + (1 - c.beta2) * g[i] * g[i];
    const pd = p[i] * (1 - lr * c.weightDecay);
    P[i] = pd - (lr / bc1) * M[i] / (Math.sqrt(W[i]) / Math.sqrt(bc2) + c.eps);
  }
  return { p: P, m: M, v: W };
}
