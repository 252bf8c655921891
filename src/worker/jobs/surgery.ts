/**
 * Adapter-surgery jobs (run in the analysis worker; ORT blocks its thread):
 *   surgery.rebalance  BaLoRA projection → new adapter + per-module before/after report
 *   surgery.plan       rank-reduction preview from the analysis σ (writes nothing)
 *   surgery.reduce     rank reduction → new PEFT adapter, verified
 *   surgery.merge      W0 + s·B·A → new model file
 *   surgery.combine    w1·ΔW1 + w2·ΔW2 (cat | svd) → new adapter
 *   surgery.rescale    lora_alpha × factor → new adapter
 * Every writer refuses existing outputs (src/core/formats/writer.ts). Handlers are exported so the
 * unit tests can call them directly with a JobContext.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { analyzeAdapter } from '../../core/analysis/lora';
import type { Adapter } from '../../core/formats/adapter';
import { openAdapter } from '../../core/formats/open';
import { readPair, rebalanceAdapter } from '../../core/surgery/balora';
import { combineAdapters, mergeIntoModel, rescaleAdapter } from '../../core/surgery/combine';
import { balancedHessianKappa, factorScaleImbalance } from '../../core/surgery/hessian';
import { describeRule, planRankReduction, reduceRankAdapter, type RankRule } from '../../core/surgery/rank';
import type {
  CombineParams, MergeParams, PlanJobResult, PlanParams, RankRuleSpec, RebalanceJobResult, RebalanceParams, ReduceJobResult,
  ReduceParams, RescaleParams, SimpleJobResult,
} from '../../shared/surgery';
import { Combine, Merge, Plan, Rebalance, Reduce, Rescale } from '../../shared/jobs';
import { handle, type JobContext, type JobHandler } from './registry';

/** Values typed by the user (factors, weights) are checked here; the params' shape is the job's type. */
function nonEmpty(v: string, k: string): string {
  if (typeof v !== 'string' || !v) throw new Error(`surgery job: parameter "${k}" must be a non-empty string`);
  return v;
}

function finite(v: number, k: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`surgery job: parameter "${k}" must be a finite number, got ${String(v)}`);
  return v;
}

export function toRankRule(r: RankRuleSpec): RankRule {
  switch (r.kind) {
    case 'rank': return { kind: 'rank', k: r.value };
    case 'sv_ratio':
    case 'sv_cumulative':
    case 'sv_fro': return { kind: r.kind, value: r.value, maxRank: r.maxRank };
    default: throw new Error(`unknown rank rule ${String((r as { kind: unknown }).kind)}`);
  }
}

function checkRule(r: RankRuleSpec): RankRuleSpec {
  const kind = r?.kind;
  if (kind !== 'rank' && kind !== 'sv_ratio' && kind !== 'sv_cumulative' && kind !== 'sv_fro') throw new Error(`unknown rank rule ${String(kind)}`);
  return { kind, value: finite(r.value, 'value'), maxRank: typeof r.maxRank === 'number' ? r.maxRank : undefined };
}

export function sha256File(file: string): string {
  const h = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    let n: number;
    while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

function withAdapter<T>(p: string, fn: (a: Adapter) => Promise<T>): Promise<T> {
  const a = openAdapter(p);
  return fn(a).finally(() => a.store.close());
}

function fro(x: Float64Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return Math.sqrt(s);
}

/** Factor norms ‖A‖_F, ‖B‖_F per module (fp64 of the stored values). */
function factorNorms(a: Adapter): Map<string, { normA: number; normB: number }> {
  const out = new Map<string, { normA: number; normB: number }>();
  for (const m of a.modules) {
    const f = readPair(a, m);
    out.set(m.name, { normA: fro(f.A), normB: fro(f.B) });
  }
  return out;
}

const progressOf = (ctx: JobContext) => (done: number, total: number, message: string) => ctx.progress(done, total, message);

export async function rebalanceJob(p: RebalanceParams, ctx: JobContext): Promise<RebalanceJobResult> {
  const adapterPath = nonEmpty(p.adapterPath, 'adapterPath'), outDir = nonEmpty(p.outDir, 'outDir');
  const t0 = performance.now();
  return withAdapter(adapterPath, async (a) => {
    const sha = sha256File(a.weightsFile);
    const before = factorNorms(a);
    const r = await rebalanceAdapter(a, ctx.engine, outDir, { token: ctx.token, onProgress: progressOf(ctx) });
    const after = openAdapter(r.outDir);
    let afterNorms: Map<string, { normA: number; normB: number }>;
    try {
      afterNorms = factorNorms(after);
    } finally {
      after.store.close();
    }
    if (sha256File(a.weightsFile) !== sha) throw new Error(`${a.weightsFile} changed while rebalancing (sha256 differs)`);
    const modules = r.perModule.map((m) => {
      const nb = before.get(m.name), na = afterNorms.get(m.name);
      const cB = nb ? factorScaleImbalance(nb.normA, nb.normB) : NaN;
      const cA = na ? factorScaleImbalance(na.normA, na.normB) : NaN;
      return {
        name: m.name, rank: m.rank, gapBefore: m.gapBefore, gapAfter: m.gapAfter,
        kappaABefore: m.kappaABefore, kappaBBefore: m.kappaBBefore, kappaAAfter: m.kappaAAfter, kappaBAfter: m.kappaBAfter,
        maxRelErr: m.maxRelErr, tolerance: m.tolerance, verified: m.maxRelErr <= m.tolerance || m.maxRelErr === 0,
        scaleBefore: cB, scaleAfter: cA,
        // the core's exact κ_H = (σ₁(B)² + σ₁(A)²)/min(σ_r(B)², σ_r(A)²) of the input / written factors
        hessianKappaBefore: m.hessianKappaBefore,
        hessianKappaAfter: m.hessianKappaAfter,
        hessianKappaBalanced: balancedHessianKappa(m.sigma),
        method: m.method,
      };
    });
    return {
      adapterPath: a.path, adapterName: a.name, outDir: r.outDir, weightsFile: r.weightsFile,
      dtype: a.modules[0]?.A.tensor.dtype ?? '', inputSha256: sha, modules, verification: r.verification, ms: performance.now() - t0,
    };
  });
}

export async function planJob(p: PlanParams, ctx: JobContext): Promise<PlanJobResult> {
  const adapterPath = nonEmpty(p.adapterPath, 'adapterPath');
  const rule = checkRule(p.rule);
  return withAdapter(adapterPath, async (a) => {
    const report = await analyzeAdapter(a, { engine: ctx.engine, token: ctx.token, onProgress: progressOf(ctx) });
    const plan = planRankReduction(report, toRankRule(rule));
    const sig = new Map(report.modules.map((m) => [m.name, m.sigma]));
    return {
      adapterPath: a.path, adapterName: a.name, rule, ruleText: describeRule(toRankRule(rule)),
      modules: plan.modules.map((m) => ({ ...m, sigma: Array.from(sig.get(m.name) ?? []) })),
      paramsBefore: plan.paramsBefore, paramsAfter: plan.paramsAfter, meanFroKept: plan.meanFroKept,
    };
  });
}

export async function reduceJob(p: ReduceParams, ctx: JobContext): Promise<ReduceJobResult> {
  const adapterPath = nonEmpty(p.adapterPath, 'adapterPath'), outDir = nonEmpty(p.outDir, 'outDir');
  const rule = checkRule(p.rule);
  const t0 = performance.now();
  return withAdapter(adapterPath, async (a) => {
    const r = await reduceRankAdapter(a, ctx.engine, outDir, toRankRule(rule), { token: ctx.token, onProgress: progressOf(ctx) });
    return { adapterPath: a.path, outDir: r.outDir, weightsFile: r.weightsFile, ruleText: describeRule(toRankRule(rule)), modules: r.perModule, config: r.config, verification: r.verification, ms: performance.now() - t0 };
  });
}

export async function mergeJob(p: MergeParams, ctx: JobContext): Promise<SimpleJobResult> {
  const adapterPath = nonEmpty(p.adapterPath, 'adapterPath'), basePath = nonEmpty(p.basePath, 'basePath'), outFile = nonEmpty(p.outFile, 'outFile');
  const t0 = performance.now();
  return withAdapter(adapterPath, async (a) => {
    // a weights file / index, or a Hugging Face model folder (→ a new folder when `outFile` is not *.safetensors)
    // The model folder's own weights → merge from the folder, so that its config names the base
    // (checkAdapterBase compares base_model_name_or_path with the folder, not with "model.safetensors")
    const dir = path.dirname(basePath);
    const folder = /^model\.safetensors(\.index\.json)?$/.test(path.basename(basePath)) && fs.existsSync(path.join(dir, 'config.json')) ? dir : basePath;
    const r = await mergeIntoModel(folder, a, ctx.engine, outFile, { force: p.force === true, token: ctx.token, onProgress: progressOf(ctx) });
    return {
      operation: 'merge', output: r.outDir ?? r.outFile, isAdapter: false,
      summary: `${r.merged.length} weights merged (W₀ + s·B·A), ${r.copied} tensors copied from ${path.basename(basePath)}`,
      rows: r.merged.map((m) => ({ name: m.tensor, value: `${m.dtype}, layout ${m.layout}, max abs error ${m.maxAbsError.toExponential(2)}` })),
      verification: r.verification, warnings: r.warnings, ms: performance.now() - t0,
    };
  });
}

export async function combineJob(p: CombineParams, ctx: JobContext): Promise<SimpleJobResult> {
  const p1 = nonEmpty(p.adapter1, 'adapter1'), p2 = nonEmpty(p.adapter2, 'adapter2'), outDir = nonEmpty(p.outDir, 'outDir');
  const w1 = finite(p.weight1, 'weight1'), w2 = finite(p.weight2, 'weight2');
  const mode = p.mode === 'svd' ? 'svd' : 'cat';
  const rank = typeof p.rank === 'number' ? p.rank : undefined;
  const t0 = performance.now();
  return withAdapter(p1, (a1) => withAdapter(p2, async (a2) => {
    const r = await combineAdapters(ctx.engine, a1, w1, a2, w2, outDir, { mode, rank, force: p.force === true, token: ctx.token, onProgress: progressOf(ctx) });
    return {
      operation: 'combine', output: r.outDir, isAdapter: true,
      summary: `${w1}·${a1.name} + ${w2}·${a2.name} (${mode}), ${r.perModule.length} modules, verified by reopening`,
      rows: r.perModule.map((m) => ({ name: m.name, value: `rank ${m.rank}, rel. err ${m.relErr.toExponential(2)}` })),
      verification: r.verification, warnings: r.warnings, ms: performance.now() - t0,
    };
  }));
}

export async function rescaleJob(p: RescaleParams, ctx: JobContext): Promise<SimpleJobResult> {
  const adapterPath = nonEmpty(p.adapterPath, 'adapterPath'), outDir = nonEmpty(p.outDir, 'outDir');
  const factor = finite(p.factor, 'factor');
  const t0 = performance.now();
  return withAdapter(adapterPath, async (a) => {
    ctx.progress(0, 1, `rescaling ${a.name}`);
    const r = rescaleAdapter(a, factor, outDir);
    ctx.progress(1, 1, 'written');
    const rows = ['r', 'lora_alpha', 'use_rslora'].map((k) => ({ name: k, value: `${JSON.stringify(a.config?.[k])} → ${JSON.stringify(r.config[k])}` }));
    return { operation: 'rescale', output: r.outDir, isAdapter: true, summary: `lora_alpha × ${factor}: ΔW scaled by ${factor}, factors unchanged`, rows, verification: r.verification, ms: performance.now() - t0 };
  });
}

export const surgeryHandlers: JobHandler[] = [
  handle(Rebalance, rebalanceJob),
  handle(Plan, planJob),
  handle(Reduce, reduceJob),
  handle(Merge, mergeJob),
  handle(Combine, combineJob),
  handle(Rescale, rescaleJob),
];
