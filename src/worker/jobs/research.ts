/**
 * Research worker jobs (issue 5 part 2): attention Lipschitz table + adversarial √n scaling, base vs LoRA token
 * dynamics with the Gaussian covariance ODE overlay, the Koubbi bifurcation table, and VLoRA cross-layer increments.
 * Each handler is a thin wrapper over src/core/research (the compute functions are exported for tests).
 */
import type { Engine } from '../../core/engine/ort';
import type { Adapter } from '../../core/formats/adapter';
import { CancelledError } from '../../core/util/cancel';
import { openAdapter, openStore } from '../../core/formats/open';
import { readJsonFile } from '../../core/util/json';
import type { TensorStore } from '../../core/formats/store';
import { Rng } from '../../core/util/rng';
import { mat, Mat, matmul, transpose } from '../../core/linalg/dense';
export { headMatrices } from '../../core/research/lipschitz';
import { attentionLayout, attentionLipschitzTable, findModule, headFromQKV, headMatrices, lipschitzScaling, AttentionLayout } from '../../core/research/lipschitz';
import { cloudMoments, gaussianOde, koubbiBifurcation, koubbiDivergence, frameDeviation, pcaProjector, simulateParticles } from '../../core/research/dynamics';
import { crossLayerIncrements, vloraSavings } from '../../core/research/vlora';
import * as path from 'node:path';
import * as fs from 'node:fs';
import { Dynamics, Koubbi, Lipschitz, Vlora } from '../../shared/jobs';
import { handle, type JobContext, type JobHandler } from './registry';
import type { DynamicsParams, DynamicsResult, KoubbiResult, LipschitzParams, LipschitzResult, VloraParams, VloraResult } from '../../shared/research';

/** Koubbi et al. initial tokens (numpy seed 42, uniform(−1, 1), 20×2), as in ref/koubbi_bifurcation.py. */
export const KOUBBI_X0: number[][] = [[-0.250919762305275, 0.9014286128198323], [0.4639878836228102, 0.1973169683940732], [-0.687962719115127, -0.6880109593275947], [-0.8838327756636011, 0.7323522915498704], [0.2022300234864176, 0.416145155592091], [-0.9588310114083951, 0.9398197043239886], [0.6648852816008435, -0.5753217786434477], [-0.6363500655857988, -0.6331909802931324], [-0.39151551408092455, 0.04951286326447568], [-0.13610996271576847, -0.4175417196039162], [0.22370578944475894, -0.7210122786959163], [-0.4157107029295637, -0.2672763134126166], [-0.08786003156592814, 0.5703519227860272], [-0.6006524356832805, 0.02846887682722321], [0.18482913772408494, -0.9070991745600046], [0.21508970380287673, -0.6589517526254169], [-0.869896814029441, 0.8977710745066665], [0.9312640661491187, 0.6167946962329223], [-0.39077246165325863, -0.8046557719872323], [0.3684660530243138, -0.1196950125207974]];
/** Reference numbers of shared/research/papers.md §5.2 (our faithful port of Time_bifurcation.py / divergence). */
export const KOUBBI_REFERENCE = {
  clusters: [[-0.709, 0.677], [-0.304, -0.352]],
  bifurcation: [
    { eps: 0.1, timeCluster: 5.2, timeBifurcation: 5.7 }, { eps: 0.15, timeCluster: 8.7, timeBifurcation: 0 },
    { eps: 0.2, timeCluster: 6.5, timeBifurcation: 0 }, { eps: 0.25, timeCluster: 6.0, timeBifurcation: 0 },
    { eps: 0.3, timeCluster: 5.8, timeBifurcation: 0 },
  ],
  divergence: [{ eps: 0.03, time: 17.3 }, { eps: 0.1, time: 2.0 }, { eps: 0.3, time: 1.6 }],
};

function baseDir(p: string): string { return fs.statSync(p).isDirectory() ? p : path.dirname(p); }

function openBase(base: string): { store: TensorStore; config: Record<string, unknown>; layout: AttentionLayout } {
  const dir = baseDir(base);
  const config = readJsonFile(path.join(dir, 'config.json'));
  const idx = fs.readdirSync(dir).find((n) => n.endsWith('.safetensors.index.json'));
  const store = openStore(path.join(dir, idx ?? 'model.safetensors'));
  try {
    return { store, config, layout: attentionLayout(config, store.tensors.keys()) };
  } catch (e) {
    store.close();
    throw new Error(`${path.join(dir, 'config.json')}: ${(e as Error).message}`);
  }
}

const cancelCheck = (ctx: JobContext): void => { if (ctx.token.cancelled) throw new CancelledError(); };

export async function computeLipschitz(p: LipschitzParams, engine: Engine, ctx?: JobContext): Promise<LipschitzResult> {
  const { store, layout } = openBase(p.base);
  const adapter = p.adapter ? openAdapter(p.adapter) : undefined;
  try {
    ctx?.progress(0, 3, `Measuring every head's weights (${layout.layers} layers × ${layout.heads} heads)`);
    const table = await attentionLipschitzTable(store, layout, { engine, adapter, n: p.n, R: p.R });
    if (ctx) cancelCheck(ctx);
    ctx?.progress(1, 3, 'Growing the input length on worst-case tokens (base model)');
    const layer = Math.min(p.layer ?? 0, layout.layers - 1), head = Math.min(p.head ?? 0, layout.heads - 1);
    const R = p.R ?? Math.sqrt(layout.hidden);
    const ns = p.ns ?? [2, 4, 8, 16, 32, 64];
    const run = async (a?: Adapter): Promise<{ points: { n: number; lipschitz: number; codeBound: number; radiusBound: number }[]; slope: number }> => {
      const h = await headMatrices(store, layout, layer, head, engine, a);
      return lipschitzScaling(headFromQKV(h.Q, h.K, h.V), ns, R, { maxIter: 200, tol: 1e-8, seed: 1 });
    };
    const base = await run();
    if (ctx) cancelCheck(ctx);
    ctx?.progress(2, 3, 'Growing the input length on worst-case tokens (adapted model)');
    const adapted = adapter ? await run(adapter) : undefined;
    ctx?.progress(3, 3, 'Done');
    return { table, scaling: { layer, head, R, base, adapted }, layout: { layers: layout.layers, heads: layout.heads, kvHeads: layout.kvHeads, headDim: layout.headDim, hidden: layout.hidden } };
  } finally {
    store.close();
    adapter?.store.close();
  }
}

function project2(P: ReturnType<typeof pcaProjector>, X: Mat): number[][] {
  const p = P.project(X);
  const out: number[][] = [];
  for (let i = 0; i < p.rows; i++) out.push([p.data[i * p.cols], p.data[i * p.cols + 1] ?? 0]);
  return out;
}

export async function computeDynamics(p: DynamicsParams, engine: Engine, ctx?: JobContext): Promise<DynamicsResult> {
  const { store, layout } = openBase(p.base);
  const adapter = p.adapter ? openAdapter(p.adapter) : undefined;
  try {
    const layer = Math.min(p.layer ?? 0, layout.layers - 1), head = Math.min(p.head ?? 0, layout.heads - 1);
    const n = p.n ?? 32, steps = p.steps ?? 120, dt = p.dt ?? 0.05, seed = p.seed ?? 1;
    const d = layout.hidden;
    const b = await headMatrices(store, layout, layer, head, engine);
    const a = adapter ? await headMatrices(store, layout, layer, head, engine, adapter) : b;
    // Value map of the head in the residual stream: O_h·V_h (d×d), normalised by its spectral scale so that the
    // flow has O(1) speed; the same normaliser is used for base and LoRA.
    const Vb = matmul(b.O, b.V), Va = matmul(a.O, a.V);
    let fro = 0; for (const v of Vb.data) fro += v * v;
    const norm = Math.sqrt(fro / d) || 1;
    for (let i = 0; i < Vb.data.length; i++) { Vb.data[i] /= norm; Va.data[i] /= norm; }
    const rng = new Rng(seed);
    const X0 = mat(n, d, rng.normals(n * d, 1));
    const scoreScale = 1 / Math.sqrt(layout.headDim);
    ctx?.progress(0, 3, 'Moving the tokens through the base head');
    const opts = { dt, steps, scoreScale, recordEvery: 1 };
    const tb = simulateParticles(b.Q, b.K, Vb, X0, opts);
    if (ctx) cancelCheck(ctx);
    ctx?.progress(1, 3, 'Moving the tokens through the adapted head');
    const ta = simulateParticles(a.Q, a.K, Va, X0, opts);
    if (ctx) cancelCheck(ctx);
    ctx?.progress(2, 3, 'Solving the Gaussian approximation');
    const P = pcaProjector(tb.frames[0], 2);
    const { mean, cov } = cloudMoments(X0);
    const ellipses = (Q: Mat, K: Mat, V: Mat): DynamicsResult['base']['gaussian'] => {
      const A = matmul(transpose(K), Q);
      for (let i = 0; i < A.data.length; i++) A.data[i] *= scoreScale;
      const ode = gaussianOde(A, V, mean, cov, { dt, steps, recordEvery: 1, tolHigh: 1e8 });
      const B = P.basis; // 2×d
      return ode.history.map((h) => {
        const c = new Float64Array(d); for (let k = 0; k < d; k++) c[k] = h.mean[k] - P.mean[k];
        const m2 = [0, 1].map((r) => { let s = 0; for (let k = 0; k < d; k++) s += B.data[r * d + k] * c[k]; return s; });
        const S2 = matmul(matmul(mat(2, d, B.data), h.cov), transpose(mat(2, d, B.data)));
        return { t: h.t, mean: m2, cov: [S2.data[0], S2.data[1], S2.data[3]] };
      });
    };
    const gb = ellipses(b.Q, b.K, Vb), ga = ellipses(a.Q, a.K, Va);
    ctx?.progress(3, 3, 'Done');
    const kinds = ['q', 'k', 'v', 'o'] as const;
    return {
      layer, head, n, seed, dt, steps, times: tb.times,
      base: { frames: tb.frames.map((f) => project2(P, f)), gaussian: gb },
      lora: { frames: ta.frames.map((f) => project2(P, f)), gaussian: ga },
      deviation: frameDeviation(tb.frames, ta.frames),
      adapted: [...new Set(kinds.map((k) => findModule(adapter, layout.moduleName(layer, k))?.name).filter((n): n is string => !!n))],
      layout: { layers: layout.layers, heads: layout.heads },
    };
  } finally {
    store.close();
    adapter?.store.close();
  }
}

export function computeKoubbi(): KoubbiResult {
  const x0 = mat(KOUBBI_X0.length, 2, KOUBBI_X0.flat());
  const eps = KOUBBI_REFERENCE.bifurcation.map((r) => r.eps);
  const bif = koubbiBifurcation(x0, eps);
  const div = koubbiDivergence(x0, KOUBBI_REFERENCE.divergence.map((r) => r.eps));
  return {
    clusters: bif.clusters, rows: bif.rows, divergence: div.map((r) => ({ eps: r.eps, time: r.time ?? null, maxDeviation: r.maxDeviation })),
    reference: KOUBBI_REFERENCE,
  };
}

export async function computeVlora(p: VloraParams, engine: Engine, ctx?: JobContext): Promise<VloraResult> {
  const { store } = openBase(p.base);
  const adapter = p.adapter ? openAdapter(p.adapter) : undefined;
  try {
    const rank = p.rank ?? 8;
    ctx?.progress(0, 1, 'Comparing each layer\'s weights with the next layer\'s');
    const report = await crossLayerIncrements(store, { engine, rank, compoundSize: p.compoundSize, consecutiveOnly: true });
    if (ctx) cancelCheck(ctx);
    ctx?.progress(1, 1, 'Done');
    const ad = adapter ? {
      path: p.adapter!, modules: adapter.modules.length,
      params: adapter.modules.reduce((s, m) => s + m.rank * (m.inFeatures + m.outFeatures), 0),
      ranks: [...new Set(adapter.modules.map((m) => m.rank))].sort((a, b) => a - b),
    } : undefined;
    return { report, savings: vloraSavings(report, rank), adapter: ad };
  } finally {
    store.close();
    adapter?.store.close();
  }
}

export const researchHandlers: JobHandler[] = [
  handle(Lipschitz, (params, ctx) => computeLipschitz(params, ctx.engine, ctx)),
  handle(Dynamics, (params, ctx) => computeDynamics(params, ctx.engine, ctx)),
  handle(Koubbi, async () => computeKoubbi()),
  handle(Vlora, (params, ctx) => computeVlora(params, ctx.engine, ctx)),
];
