/**
 * Rank reduction of ΔW = s·B·A (kohya resize_lora semantics, peers.md §4.1) with balanced output
 * factors B' = Q_B U_k Σ_k^½, A' = Σ_k^½ V_kᵀ Q_Aᵀ of the raw product BA.
 *
 * Scale convention: the scale s is NOT folded into the factors; the new config keeps s by setting
 * r' = k and lora_alpha' = s·k (s·√k with rsLoRA), per module through rank_pattern/alpha_pattern when
 * the ranks differ. Then s·B'A' is the best rank-k approximation of ΔW (metadata
 * `lora-lens.scale = kept-via-alpha`).
 *
 * Rules (σ of ΔW, descending, k capped at r and at `maxRank`; a zero ΔW gets k = 1, as kohya):
 *   rank k          fixed
 *   sv_ratio x      keep σ_i > σ₁/x
 *   sv_cumulative x smallest k with Σ_{i≤k}σ_i / Σσ ≥ x
 *   sv_fro x        smallest k with Σ_{i≤k}σ_i² / Σσ² ≥ x²
 */
import { peftLoraConfig } from './peftConfig';
import * as fs from 'node:fs';
import type { Adapter } from '../formats/adapter';
import { dtypeEpsilon } from '../formats/dtype';
import { throwIfCancelled } from '../formats/errors';
import { openAdapter } from '../formats/open';
import type { Engine } from '../engine/ort';
import type { AdapterReport } from '../../shared/report';
import type { RankPlanModule } from '../../shared/analysisTypes';

export type { RankPlanModule };
import {
  FactorPair, SurgeryOptions, Verification, balancedLowRank, encodeFactor, inFileOrder, lowRankDiff, otherTensorsRaw, productTolerance,
  provenance, readPair, writeLike,
} from './balora';
import { removeOutput } from '../formats/writer';

export type RankRule =
  | { kind: 'rank'; k: number }
  | { kind: 'sv_ratio'; value: number; maxRank?: number }
  | { kind: 'sv_cumulative'; value: number; maxRank?: number }
  | { kind: 'sv_fro'; value: number; maxRank?: number };

export function describeRule(rule: RankRule): string {
  return rule.kind === 'rank' ? `rank ${rule.k}` : `${rule.kind} ${rule.value}${rule.maxRank ? ` (max rank ${rule.maxRank})` : ''}`;
}

/** Index of the first element ≥ target (torch.searchsorted, left). */
function searchSorted(a: number[], target: number): number {
  let i = 0;
  while (i < a.length && a[i] < target) i++;
  return i;
}

/** New rank for singular values σ (descending) under a rule. */
export function chooseRank(sigma: ArrayLike<number>, rule: RankRule): number {
  const s = Array.from(sigma);
  const r = s.length;
  if (r === 0) return 0;
  if (rule.kind === 'rank') {
    if (!(rule.k >= 1) || !Number.isInteger(rule.k)) throw new Error(`rank must be a positive integer, got ${rule.k}`);
    return Math.min(rule.k, r);
  }
  if (!(rule.value > 0)) throw new Error(`${rule.kind} needs a positive value, got ${rule.value}`);
  const total = s.reduce((a, b) => a + b, 0);
  let k: number;
  if (total === 0) k = 1;
  else if (rule.kind === 'sv_ratio') {
    k = s.filter((x) => x > s[0] / rule.value).length;
  } else if (rule.kind === 'sv_cumulative') {
    let c = 0;
    const cum = s.map((x) => (c += x) / total);
    k = searchSorted(cum, rule.value) + 1;
  } else {
    const t2 = s.reduce((a, b) => a + b * b, 0);
    let c = 0;
    const cum = s.map((x) => (c += x * x) / t2);
    k = searchSorted(cum, rule.value * rule.value) + 1;
  }
  k = Math.max(1, Math.min(k, r));
  if (rule.maxRank) k = Math.min(k, rule.maxRank);
  return k;
}


export interface RankPlan {
  rule: string;
  modules: RankPlanModule[];
  paramsBefore: number;
  paramsAfter: number;
  /** Mean of froKept over modules (kohya's "average Frobenius retention"). */
  meanFroKept: number;
}

type SigmaSource = AdapterReport | { name: string; sigma: ArrayLike<number>; inFeatures?: number; outFeatures?: number }[];

/** Preview of a rank reduction from the analysis report (or σ per module); writes nothing. */
export function planRankReduction(src: SigmaSource, rule: RankRule): RankPlan {
  const mods = Array.isArray(src) ? src : src.modules.filter((m) => !m.error);
  let before = 0, after = 0;
  const out: RankPlanModule[] = mods.map((m) => {
    const s = Array.from(m.sigma);
    const k = chooseRank(s, rule);
    const e2 = s.reduce((a, b) => a + b * b, 0), e1 = s.reduce((a, b) => a + b, 0);
    let k2 = 0, k1 = 0;
    for (let i = 0; i < k; i++) { k2 += s[i] ** 2; k1 += s[i]; }
    const dims = (m.inFeatures ?? 0) + (m.outFeatures ?? 0);
    before += s.length * dims; after += k * dims;
    return {
      name: m.name, r: s.length, k, energyKept: e2 > 0 ? k2 / e2 : 1, froKept: e2 > 0 ? Math.sqrt(k2 / e2) : 1,
      sumKept: e1 > 0 ? k1 / e1 : 1, maxRatio: k > 0 && s[k - 1] > 0 ? s[0] / s[k - 1] : Infinity, tailFro: Math.sqrt(Math.max(e2 - k2, 0)),
    };
  });
  return { rule: describeRule(rule), modules: out, paramsBefore: before, paramsAfter: after, meanFroKept: out.length ? out.reduce((a, m) => a + m.froKept, 0) / out.length : 1 };
}

export interface ReduceModule extends RankPlanModule {
  scale: number;
  /** ‖s·B'A' − ΔW_k‖_F / ‖ΔW_k‖_F of the written factors (ΔW_k: fp64 truncation). */
  relErrVsTruncated: number;
  /** ‖s·B'A' − ΔW‖_F (should equal tailFro up to rounding). */
  errVsOriginal: number;
}

export interface ReduceResult {
  outDir: string;
  weightsFile: string;
  perModule: ReduceModule[];
  config: Record<string, unknown>;
  /** Written s'·B'A' against the fp64 rank-k truncation ΔW_k (the truncation error itself is tailFro). */
  verification: Verification;
  /** Side files of the input folder that were not copied, with the reason. */
  skippedSideFiles?: string[];
}

/** Most frequent value (ties: the larger). */
function mode(xs: number[]): number {
  const c = new Map<number, number>();
  for (const x of xs) c.set(x, (c.get(x) ?? 0) + 1);
  return [...c.entries()].sort((a, b) => b[1] - a[1] || b[0] - a[0])[0][0];
}

/** Round-off-clean alpha: s·k computed in fp64 then trimmed to 12 significant digits. */
function cleanNumber(x: number): number {
  return Number(x.toPrecision(12));
}

/** PEFT config for per-module ranks and scales (rank_pattern/alpha_pattern with full module names). */
export function configForRanks(base: Record<string, unknown> | undefined, mods: { name: string; k: number; scale: number }[], rslora: boolean): Record<string, unknown> {
  const cfg: Record<string, unknown> = { ...(base ?? { peft_type: 'LORA' }) };
  const alphaOf = (k: number, s: number) => cleanNumber(rslora ? s * Math.sqrt(k) : s * k);
  const r0 = mode(mods.map((m) => m.k));
  const a0 = mode(mods.filter((m) => m.k === r0).map((m) => alphaOf(m.k, m.scale)));
  const rp: Record<string, number> = {}, ap: Record<string, number> = {};
  for (const m of mods) {
    if (m.k !== r0) rp[m.name] = m.k;
    const a = alphaOf(m.k, m.scale);
    if (a !== a0) ap[m.name] = a;
  }
  cfg.r = r0;
  cfg.lora_alpha = a0;
  cfg.rank_pattern = rp;
  cfg.alpha_pattern = ap;
  cfg.use_rslora = rslora;
  return peftLoraConfig(cfg);
}

/**
 * Writes a NEW PEFT adapter with every module reduced to its rule rank, balanced factors, scale
 * kept through alpha; reopens and verifies ‖s'B'A' − ΔW_k‖_F / ‖ΔW_k‖_F against the fp64 truncation.
 */
export async function reduceRankAdapter(adapter: Adapter, engine: Engine, outDir: string, rule: RankRule, opts: SurgeryOptions = {}): Promise<ReduceResult> {
  if (adapter.format !== 'peft' || !adapter.config) throw new Error(`${adapter.path}: rank reduction writes PEFT adapters; this is a ${adapter.format} adapter without adapter_config.json`);
  const tensors = [];
  const keep = new Map<string, { f: FactorPair; A: Float64Array; B: Float64Array; k: number; sigma: Float64Array; scale: number }>();
  const rows: { name: string; k: number; scale: number }[] = [];
  let done = 0;
  for (const m of adapter.modules) {
    throwIfCancelled(opts.token);
    if (m.magnitude) throw new Error(`${m.name}: DoRA adapters cannot be rank-reduced (the magnitude vector depends on ΔW)`);
    const f = readPair(adapter, m);
    // σ of the raw product BA; ΔW's σ are s·σ, rules are scale invariant.
    const probe = await balancedLowRank(engine, f, 0, 1);
    const k = chooseRank(probe.sigma, rule);
    const res = await balancedLowRank(engine, f, k, 1);
    keep.set(m.name, { f, A: res.A, B: res.B, k, sigma: res.sigma, scale: m.scale });
    rows.push({ name: m.name, k, scale: m.scale });
    const shapeA = m.A.tensor.shape.length > 2 ? [k, ...m.A.tensor.shape.slice(1)] : undefined;
    const shapeB = m.B.tensor.shape.length > 2 ? [m.B.tensor.shape[0], k, ...m.B.tensor.shape.slice(2)] : undefined;
    tensors.push(encodeFactor(res.A, k, f.inF, m.A, shapeA));
    tensors.push(encodeFactor(res.B, f.outF, k, m.B, shapeB));
    opts.onProgress?.(++done, adapter.modules.length * 2, `reduced ${m.name} ${f.r} → ${k}`);
  }
  const config = configForRanks(adapter.config, rows, adapter.summary.useRslora);
  const md = provenance('rank-reduce', adapter.path, { rule: describeRule(rule), scale: 'kept-via-alpha (s = lora_alpha/r per module; factors are balanced factors of the raw product B·A)' });
  const written = writeLike(adapter, outDir, inFileOrder(adapter, [...tensors, ...otherTensorsRaw(adapter)]), md, config);
  try {
    const re = openAdapter(written.out);
    try {
      const per: ReduceModule[] = [];
      const ver: Verification = { maxAbsError: 0, maxRelError: 0, tolerance: 0, checked: 0, what: "reopened; every module's s'·B'A' against the fp64 rank-k truncation ΔW_k of s·BA (the truncation itself removes tailFro)" };
      const plan = planRankReduction(rows.map((r) => ({ name: r.name, sigma: keep.get(r.name)!.sigma })), rule);
      for (const m2 of re.modules) {
        const kp = keep.get(m2.name);
        if (!kp) throw new Error(`verification: unexpected module ${m2.name}`);
        if (Math.abs(m2.scale - kp.scale) > 1e-9 * Math.abs(kp.scale)) throw new Error(`verification: ${m2.name} scale ${m2.scale} ≠ ${kp.scale} after rewriting alpha/rank`);
        const f2 = readPair(re, m2);
        if (f2.r !== kp.k) throw new Error(`verification: ${m2.name} has rank ${f2.r}, expected ${kp.k}`);
        const dK = await lowRankDiff(engine, { A: kp.A, B: kp.B, r: kp.k, s: kp.scale }, { A: f2.A, B: f2.B, r: f2.r, s: m2.scale }, f2.outF, f2.inF);
        const dW = await lowRankDiff(engine, { A: kp.f.A, B: kp.f.B, r: kp.f.r, s: kp.scale }, { A: f2.A, B: f2.B, r: f2.r, s: m2.scale }, f2.outF, f2.inF);
        const rel = dK.refFro > 0 ? dK.errFro / dK.refFro : dK.errFro;
        // Mixed-precision factors (legacy .bin: F32 A, F16 B): the coarser dtype sets the tolerance.
        const dt = dtypeEpsilon(m2.B.tensor.dtype) > dtypeEpsilon(m2.A.tensor.dtype) ? m2.B.tensor.dtype : m2.A.tensor.dtype;
        const tol = dK.refMax > 0 ? productTolerance(dK, dt) / dK.refMax * Math.sqrt(f2.r + 1) : 1e-12;
        if (!(dK.errMax <= productTolerance(dK, dt)) && !(dK.refMax === 0 && dK.errMax === 0)) {
          throw new Error(`verification failed for ${m2.name}: ‖ΔW' − ΔW_k‖/‖ΔW_k‖ = ${rel.toExponential(3)} (max-abs tolerance ${tol.toExponential(2)})`);
        }
        ver.maxAbsError = Math.max(ver.maxAbsError, dK.errMax);
        if (dK.refMax > 0) {
          ver.maxRelError = Math.max(ver.maxRelError, dK.errMax / dK.refMax);
          ver.tolerance = Math.max(ver.tolerance, productTolerance(dK, m2.A.tensor.dtype) / dK.refMax);
        }
        ver.checked++;
        const p = plan.modules.find((x) => x.name === m2.name)!;
        per.push({ ...p, tailFro: p.tailFro * Math.abs(kp.scale), scale: m2.scale, relErrVsTruncated: rel, errVsOriginal: dW.errFro });
      }
      return { outDir: written.out, weightsFile: written.weightsFile, perModule: per, config, verification: ver, skippedSideFiles: written.skipped };
    } finally {
      re.store.close();
    }
  } catch (e) {
    removeOutput(fs.statSync(adapter.path).isDirectory() ? written.out : written.weightsFile);
    throw e;
  }
}
