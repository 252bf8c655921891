/**
 * Adapter-surgery jobs (run in the analysis worker; ORT blocks its thread):
 *   surgery.rebalance  BaLoRA projection → new adapter + per-module before/after report
 *   surgery.plan       rank-reduction preview from the analysis σ (writes nothing)
 *   surgery.reduce     rank reduction → new PEFT adapter, verified
 *   surgery.merge      W0 + s·B·A → new model file
 *   surgery.combine    w1·ΔW1 + w2·ΔW2 (cat | svd) → new adapter
 *   surgery.rescale    lora_alpha × factor → new adapter
 * Every writer refuses existing outputs (src/core/surgery/writer.ts). Handlers are exported so the
 * unit tests can call them directly with a JobContext.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { analyzeAdapter } from '../../core/analysis/lora';
import type { Adapter } from '../../core/formats/adapter';
import { openAdapter, openStore } from '../../core/formats/open';
import { readPair, rebalanceAdapter } from '../../core/surgery/balora';
import { combineAdapters, mergeIntoBase, rescaleAdapter } from '../../core/surgery/combine';
import { balancedHessianKappa, factorScaleImbalance, scaledHessianKappa } from '../../core/surgery/hessian';
import { describeRule, planRankReduction, reduceRankAdapter, type RankRule } from '../../core/surgery/rank';
import type {
  CombineParams, MergeParams, PlanJobResult, RankRuleSpec, RebalanceJobResult, RebalanceParams, ReduceJobResult,
  RescaleParams, SimpleJobResult,
} from '../../../webview/surgery/protocol';
import { registerJob, type JobContext } from './registry';

function str(o: Record<string, unknown>, k: string): string {
  const v = o[k];
  if (typeof v !== 'string' || !v) throw new Error(`surgery job: parameter "${k}" must be a non-empty string`);
  return v;
}

function num(o: Record<string, unknown>, k: string): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`surgery job: parameter "${k}" must be a finite number, got ${String(v)}`);
  return v;
}

function obj(p: unknown): Record<string, unknown> {
  if (!p || typeof p !== 'object') throw new Error('surgery job: parameters must be an object');
  return p as Record<string, unknown>;
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

function parseRule(v: unknown): RankRuleSpec {
  const o = obj(v);
  const kind = o.kind;
  if (kind !== 'rank' && kind !== 'sv_ratio' && kind !== 'sv_cumulative' && kind !== 'sv_fro') throw new Error(`unknown rank rule ${String(kind)}`);
  const maxRank = typeof o.maxRank === 'number' ? o.maxRank : undefined;
  return { kind, value: num(o, 'value'), maxRank };
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

export async function rebalanceJob(params: unknown, ctx: JobContext): Promise<RebalanceJobResult> {
  const o = obj(params) as Partial<RebalanceParams> & Record<string, unknown>;
  const adapterPath = str(o, 'adapterPath'), outDir = str(o, 'outDir');
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
        hessianKappaBefore: Number.isFinite(cB) ? scaledHessianKappa(m.sigma, cB) : Infinity,
        hessianKappaAfter: Number.isFinite(cA) ? scaledHessianKappa(m.sigma, cA) : Infinity,
        hessianKappaBalanced: balancedHessianKappa(m.sigma),
        method: m.method,
      };
    });
    return {
      adapterPath: a.path, adapterName: a.name, outDir: r.outDir, weightsFile: r.weightsFile,
      dtype: a.modules[0]?.A.tensor.dtype ?? '', inputSha256: sha, modules, ms: performance.now() - t0,
    };
  });
}

export async function planJob(params: unknown, ctx: JobContext): Promise<PlanJobResult> {
  const o = obj(params);
  const adapterPath = str(o, 'adapterPath');
  const rule = parseRule(o.rule);
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

export async function reduceJob(params: unknown, ctx: JobContext): Promise<ReduceJobResult> {
  const o = obj(params);
  const adapterPath = str(o, 'adapterPath'), outDir = str(o, 'outDir');
  const rule = parseRule(o.rule);
  const t0 = performance.now();
  return withAdapter(adapterPath, async (a) => {
    const r = await reduceRankAdapter(a, ctx.engine, outDir, toRankRule(rule), { token: ctx.token, onProgress: progressOf(ctx) });
    return { adapterPath: a.path, outDir: r.outDir, weightsFile: r.weightsFile, ruleText: describeRule(toRankRule(rule)), modules: r.perModule, config: r.config, ms: performance.now() - t0 };
  });
}

export async function mergeJob(params: unknown, ctx: JobContext): Promise<SimpleJobResult> {
  const o = obj(params) as Partial<MergeParams> & Record<string, unknown>;
  const adapterPath = str(o, 'adapterPath'), basePath = str(o, 'basePath'), outFile = str(o, 'outFile');
  const t0 = performance.now();
  return withAdapter(adapterPath, async (a) => {
    const base = openStore(basePath);
    try {
      const r = await mergeIntoBase(base, a, ctx.engine, outFile, { token: ctx.token, onProgress: progressOf(ctx) });
      return {
        operation: 'merge', output: r.outFile, isAdapter: false,
        summary: `${r.merged.length} weights merged (W₀ + s·B·A), ${r.copied} tensors copied from ${path.basename(basePath)}`,
        rows: r.merged.map((m) => ({ name: m.tensor, value: `${m.dtype}, layout ${m.layout}` })), ms: performance.now() - t0,
      };
    } finally {
      base.close();
    }
  });
}

export async function combineJob(params: unknown, ctx: JobContext): Promise<SimpleJobResult> {
  const o = obj(params) as Partial<CombineParams> & Record<string, unknown>;
  const p1 = str(o, 'adapter1'), p2 = str(o, 'adapter2'), outDir = str(o, 'outDir');
  const w1 = num(o, 'weight1'), w2 = num(o, 'weight2');
  const mode = o.mode === 'svd' ? 'svd' : 'cat';
  const rank = typeof o.rank === 'number' ? o.rank : undefined;
  const t0 = performance.now();
  return withAdapter(p1, (a1) => withAdapter(p2, async (a2) => {
    const r = await combineAdapters(ctx.engine, a1, w1, a2, w2, outDir, { mode, rank, token: ctx.token, onProgress: progressOf(ctx) });
    return {
      operation: 'combine', output: r.outDir, isAdapter: true,
      summary: `${w1}·${a1.name} + ${w2}·${a2.name} (${mode}), ${r.perModule.length} modules, verified by reopening`,
      rows: r.perModule.map((m) => ({ name: m.name, value: `rank ${m.rank}, rel. err ${m.relErr.toExponential(2)}` })), ms: performance.now() - t0,
    };
  }));
}

export async function rescaleJob(params: unknown, ctx: JobContext): Promise<SimpleJobResult> {
  const o = obj(params) as Partial<RescaleParams> & Record<string, unknown>;
  const adapterPath = str(o, 'adapterPath'), outDir = str(o, 'outDir');
  const factor = num(o, 'factor');
  const t0 = performance.now();
  return withAdapter(adapterPath, async (a) => {
    ctx.progress(0, 1, `rescaling ${a.name}`);
    const r = rescaleAdapter(a, factor, outDir);
    ctx.progress(1, 1, 'written');
    const rows = ['r', 'lora_alpha', 'use_rslora'].map((k) => ({ name: k, value: `${JSON.stringify(a.config?.[k])} → ${JSON.stringify(r.config[k])}` }));
    return { operation: 'rescale', output: r.outDir, isAdapter: true, summary: `lora_alpha × ${factor}: ΔW scaled by ${factor}, factors unchanged`, rows, ms: performance.now() - t0 };
  });
}

registerJob('surgery.rebalance', rebalanceJob);
registerJob('surgery.plan', planJob);
registerJob('surgery.reduce', reduceJob);
registerJob('surgery.merge', mergeJob);
registerJob('surgery.combine', combineJob);
registerJob('surgery.rescale', rescaleJob);
