/**
 * Adapter doctor: lints a LoRA adapter for the defects practitioners report in PEFT, kohya,
 * mlx-lm and llama.cpp trackers (research/peers.md "adapter lint"). Codes and their meaning are
 * in codes.ts (stable strings, documented in docs/doctor.md).
 *
 * Inputs are the analysis report (σ of ΔW, factor norms, balance gap: analysis/lora.ts), one bit
 * scan per factor (scan.ts: zeros, subnormals, NaN/Inf) and the adapter's config. With a base
 * model the intruder analysis (base/intruders.ts) adds `intruders` / `base-mismatch`.
 *
 * Every finding names a file (the config for config-level findings, with the 1-based line of the
 * offending key when there is one; the weights file with the tensor name otherwise), so the
 * extension can turn findings into Problems-panel diagnostics.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Adapter, LoraModule } from '../formats/adapter';
import { matchPattern, PEFT_CONFIG } from '../formats/peft';
import type { Engine } from '../engine/ort';
import { analyzeAdapter } from '../analysis/lora';
import type { AdapterReport, ModuleReport } from '../../shared/report';
import { DOCTOR_CODES, DoctorCode, Severity } from './codes';
import { FactorScan, rawScannable, scanRaw, scanTensor } from './scan';
import type { TensorInfo } from '../formats/safetensors';
import type { BaseModel } from '../base/basemodel';
import { adapterIntruders, type AdapterIntruders } from '../base/intruders';

export type { Severity, DoctorCode };
export { DOCTOR_CODES };

export interface Finding {
  /** Module path the finding is about; "" for adapter-wide findings. */
  module: string;
  code: DoctorCode;
  severity: Severity;
  message: string;
  /** File to attach the diagnostic to (adapter_config.json or the weights file). */
  file: string;
  /** 1-based line in `file` (config keys), when known. */
  line?: number;
  /** Tensor the finding is about, when it is about one. */
  tensor?: string;
  /** Machine-readable fix, e.g. { rank_pattern: {...} } or { command: 'lora-lens rebalance ...' }. */
  suggestion?: Record<string, unknown>;
}

export interface DoctorThresholds {
  /** dead-module: ‖ΔW‖_F < deadRatio · median. */
  deadRatio: number;
  /** rank-excess: energy fraction kept by k, and r ≥ rankFactor·k, r ≥ minRank. */
  rankEnergy: number;
  rankFactor: number;
  minRank: number;
  /** imbalance: max(‖A‖/‖B‖, ‖B‖/‖A‖). */
  imbalanceRatio: number;
  /** factor-underflow: fraction of zeros + deep subnormals (< 5 significant bits) in a half-precision factor. */
  underflowFraction: number;
  /** scale-extreme: allowed [scaleMin, scaleMax] (mlx: scaleMaxMlx). */
  scaleMin: number;
  scaleMax: number;
  scaleMaxMlx: number;
}

export const DEFAULT_THRESHOLDS: DoctorThresholds = {
  deadRatio: 0.01, rankEnergy: 0.99, rankFactor: 4, minRank: 8, imbalanceRatio: 100,
  underflowFraction: 0.01, scaleMin: 1 / 32, scaleMax: 8, scaleMaxMlx: 64,
};

export interface DoctorSummary {
  modules: number;
  error: number;
  warning: number;
  info: number;
  /** Count per code. */
  codes: Record<string, number>;
}

export interface DoctorResult {
  adapter: { path: string; name: string; format: string; weightsFile: string; configFile?: string };
  findings: Finding[];
  summary: DoctorSummary;
  thresholds: DoctorThresholds;
}

export interface DoctorInputs {
  adapter: Adapter;
  report: AdapterReport;
  /** Bit scans of the factors, by tensor name (scanAdapter). */
  scans: Map<string, FactorScan>;
  intruders?: AdapterIntruders;
  thresholds?: Partial<DoctorThresholds>;
}

/** Scans every factor of an adapter (one pass over its bits each) not already in `have`. */
export function scanAdapter(adapter: Adapter, have?: Map<string, FactorScan>): Map<string, FactorScan> {
  const out = have ?? new Map<string, FactorScan>();
  for (const m of adapter.modules) for (const f of [m.A, m.B]) if (!out.has(f.tensor.name)) out.set(f.tensor.name, scanTensor(adapter.store, f.tensor));
  return out;
}

/**
 * Analysis hook that scans each factor's raw bytes while analyzeAdapter has them (saves a second
 * read of the file): pass `hook` as AnalyzeOptions.onRawFactor, then scanAdapter(adapter, scans).
 */
export function scanningHook(): { scans: Map<string, FactorScan>; hook: (t: TensorInfo, raw: Uint8Array) => void } {
  const scans = new Map<string, FactorScan>();
  return { scans, hook: (t, raw) => { if (rawScannable(t)) scans.set(t.name, scanRaw(t, raw)); } };
}

const median = (xs: number[]): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
};

const fmt = (x: number): string => (x === 0 ? '0' : Math.abs(x) >= 1e4 || Math.abs(x) < 1e-3 ? x.toExponential(2) : String(Number(x.toPrecision(3))));

/** 1-based line of the first `"key":` in a JSON text (undefined when absent). */
export function jsonKeyLine(text: string, key: string): number | undefined {
  const re = new RegExp(`"${key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"\\s*:`);
  const m = re.exec(text);
  if (!m) return undefined;
  let line = 1;
  for (let i = 0; i < m.index; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

/** 1-based line of a string value inside a JSON text (e.g. one entry of target_modules). */
function jsonValueLine(text: string, value: string, after?: number): number | undefined {
  const q = JSON.stringify(value);
  let from = 0;
  if (after !== undefined) { for (let l = 1; l < after && from >= 0; l++) from = text.indexOf('\n', from) + 1; }
  const i = text.indexOf(q, Math.max(0, from));
  if (i < 0) return undefined;
  let line = 1;
  for (let k = 0; k < i; k++) if (text.charCodeAt(k) === 10) line++;
  return line;
}

/** PEFT's target_modules check (tuners_utils.check_target_module_exists), on stripped names. */
function targeted(cfg: Record<string, unknown>, name: string): boolean {
  const tm = cfg.target_modules;
  let hit: boolean;
  if (typeof tm === 'string') {
    if (tm === 'all-linear') hit = true;
    else { try { hit = new RegExp(`^(?:${tm})$`).test(name) || new RegExp(`^(?:${tm})$`).test(`base_model.model.${name}`); } catch { hit = true; } }
  } else if (Array.isArray(tm)) hit = tm.some((t) => typeof t === 'string' && (name === t || name.endsWith(`.${t}`)));
  else return true; // no target list recorded: nothing to check
  if (!hit) return false;
  const ex = cfg.exclude_modules;
  if (typeof ex === 'string') { try { if (new RegExp(`^(?:${ex})$`).test(name)) return false; } catch { /* literal below */ } }
  else if (Array.isArray(ex) && ex.some((t) => typeof t === 'string' && (name === t || name.endsWith(`.${t}`)))) return false;
  return true;
}

/** The pure rules: findings from the report, the scans and the config. */
export function diagnose(inp: DoctorInputs): DoctorResult {
  const th: DoctorThresholds = { ...DEFAULT_THRESHOLDS, ...inp.thresholds };
  const { adapter, report, scans } = inp;
  const findings: Finding[] = [];
  const cfgFile = adapter.config ? path.join(fs.statSync(adapter.path).isDirectory() ? adapter.path : path.dirname(adapter.path), PEFT_CONFIG) : undefined;
  let cfgText = '';
  if (cfgFile) { try { cfgText = fs.readFileSync(cfgFile, 'utf8'); } catch { /* config vanished: no line numbers */ } }
  const cfgLine = (key: string): number | undefined => (cfgText ? jsonKeyLine(cfgText, key) : undefined);
  const wfile = adapter.weightsFile;
  const add = (f: Omit<Finding, 'severity'> & { severity?: Severity }): void => {
    findings.push({ ...f, severity: f.severity ?? DOCTOR_CODES[f.code].severity });
  };
  const byName = new Map<string, ModuleReport>(report.modules.map((m) => [m.name, m]));
  const mods = adapter.modules;
  const cfg = adapter.config;

  // --- factor bits: NaN/Inf, zero factors, underflow --------------------------------------------
  let zeroDelta = 0;
  for (const m of mods) {
    const sa = scans.get(m.A.tensor.name), sb = scans.get(m.B.tensor.name);
    for (const [s, role] of [[sa, 'A'], [sb, 'B']] as const) {
      if (!s) continue;
      if (s.nan + s.inf > 0) {
        add({ module: m.name, code: 'non-finite', file: wfile, tensor: s.tensor, message: `${m.name}: factor ${role} (${s.tensor}) has ${s.nan} NaN and ${s.inf} Inf values of ${s.numel}` });
      }
    }
    const zb = !!sb && sb.zeros === sb.numel, za = !!sa && sa.zeros === sa.numel;
    if (zb || za) zeroDelta++;
    if (zb) add({ module: m.name, code: 'zero-b', file: wfile, tensor: m.B.tensor.name, message: `${m.name}: B (${m.B.tensor.name}) is all zeros, so ΔW = 0 for this module` });
    else if (za) add({ module: m.name, code: 'zero-a', file: wfile, tensor: m.A.tensor.name, message: `${m.name}: A (${m.A.tensor.name}) is all zeros, so ΔW = 0 for this module` });
    for (const [s, role] of [[sa, 'A'], [sb, 'B']] as const) {
      if (!s || (s.dtype !== 'BF16' && s.dtype !== 'F16') || s.zeros === s.numel) continue;
      const frac = (s.zeros + s.deepSubnormals) / s.numel;
      if (frac >= th.underflowFraction) {
        add({
          module: m.name, code: 'factor-underflow', file: wfile, tensor: s.tensor,
          message: `${m.name}: ${s.dtype} factor ${role} has ${s.zeros} zeros and ${s.deepSubnormals} subnormals with < 5 significant bits (${fmt(100 * frac)} % of ${s.numel} values; ${s.subnormals} subnormals in all): small values underflowed in ${s.dtype}; save factors in F32, or rebalance (lora-lens rebalance) so B is not tiny`,
        });
      }
    }
  }
  if (mods.length > 0 && zeroDelta === mods.length) {
    add({ module: '', code: 'untrained', file: wfile, message: `all ${mods.length} modules have an all-zero factor (B = 0): ΔW = 0, the adapter is untrained (saved at initialisation, or training never updated it)` });
  }

  // --- norms: dead modules, rank excess, imbalance ----------------------------------------------
  const ok = report.modules.filter((m) => !m.error && Number.isFinite(m.fro));
  const med = median(ok.filter((m) => m.fro > 0).map((m) => m.fro));
  const rankPattern: Record<string, number> = {};
  let imbalanced = 0;
  for (const m of ok) {
    const mod = mods.find((x) => x.name === m.name);
    const tensor = mod?.B.tensor.name;
    if (m.fro > 0 && ok.length >= 3 && m.fro < th.deadRatio * med) {
      add({ module: m.name, code: 'dead-module', file: wfile, tensor, message: `${m.name}: ‖ΔW‖_F = ${fmt(m.fro)} is ${fmt(m.fro / med)}× the adapter's median ${fmt(med)}: the module barely changes the model` });
    }
    if (m.fro > 0 && m.rank >= th.minRank) {
      const e2 = m.sigma.reduce((a, s) => a + s * s, 0);
      let c = 0, k = 0;
      while (k < m.sigma.length && c < th.rankEnergy * e2) { c += m.sigma[k] ** 2; k++; }
      k = Math.max(k, 1);
      if (m.rank >= th.rankFactor * k) {
        rankPattern[m.name] = k;
        add({
          module: m.name, code: 'rank-excess', file: wfile, tensor,
          message: `${m.name}: rank ${m.rank} but ${k} singular value${k > 1 ? 's hold' : ' holds'} ${fmt(100 * th.rankEnergy)} % of ‖ΔW‖_F²; rank_pattern {"${m.name}": ${k}} would keep it with ${fmt((k / m.rank) * 100)} % of the parameters`,
          suggestion: { rank_pattern: { [m.name]: k } },
        });
      }
    }
    if (m.normA > 0 && m.normB > 0) {
      const ratio = Math.max(m.normA / m.normB, m.normB / m.normA);
      if (ratio >= th.imbalanceRatio) {
        imbalanced++;
        add({
          module: m.name, code: 'imbalance', file: wfile, tensor,
          message: `${m.name}: ‖A‖_F = ${fmt(m.normA)}, ‖B‖_F = ${fmt(m.normB)} (ratio ${fmt(ratio)}), balance gap ${fmt(m.balanceGap)}: Rebalance (lora-lens rebalance) keeps ΔW and balances the factors`,
          suggestion: { command: `lora-lens rebalance ${adapter.path} OUT` },
        });
      }
    }
  }
  if (Object.keys(rankPattern).length > 1) {
    add({
      module: '', code: 'rank-excess', file: cfgFile ?? wfile, line: cfgLine('r'),
      message: `${Object.keys(rankPattern).length} modules use far less than their rank; suggested rank_pattern ${JSON.stringify(rankPattern)} (or lora-lens reduce ${adapter.path} OUT --sv-fro ${fmt(th.rankEnergy ** 0.5)})`,
      suggestion: { rank_pattern: rankPattern },
    });
  }
  if (imbalanced > 1) {
    add({ module: '', code: 'imbalance', file: wfile, message: `${imbalanced} modules have heavily imbalanced factors; lora-lens rebalance ${adapter.path} OUT writes the same ΔW with ‖A‖ = ‖B‖ (BaLoRA projection)`, suggestion: { command: `lora-lens rebalance ${adapter.path} OUT` } });
  }

  // --- scale ---------------------------------------------------------------------------------------
  const defaulted = mods.filter((m) => /missing|assumed/i.test(m.scaleSource));
  if (defaulted.length) {
    const eg = defaulted[0];
    const where = adapter.format === 'peft' && cfgFile ? cfgFile : adapter.format === 'mlx' && cfgFile ? cfgFile : wfile;
    add({
      module: defaulted.length === mods.length ? '' : eg.name, code: 'alpha-missing', file: where, line: where === cfgFile ? cfgLine(adapter.format === 'mlx' ? 'lora_parameters' : 'r') : undefined,
      message: `${defaulted.length === mods.length ? 'all' : defaulted.length} module${defaulted.length > 1 ? 's' : ''}: ${eg.scaleSource} → scale ${fmt(eg.scale)}. Loaders that assume another default apply a different ΔW; record alpha explicitly`,
    });
  }
  if (cfg && adapter.format === 'peft') {
    const alpha = cfg.lora_alpha, r = cfg.r;
    if (alpha === 8 && typeof r === 'number' && r >= 32) {
      add({ module: '', code: 'alpha-default', file: cfgFile!, line: cfgLine('lora_alpha'), message: `lora_alpha = 8 is PEFT's default while r = ${r}: scale ${cfg.use_rslora === true ? `8/√${r}` : `8/${r}`} = ${fmt(cfg.use_rslora === true ? 8 / Math.sqrt(r) : 8 / r)}; if alpha was not chosen, the adapter is weaker than intended` });
    }
    if (cfg.use_rslora === true && typeof alpha === 'number' && typeof r === 'number' && r >= 4 && alpha >= r) {
      add({ module: '', code: 'rslora-alpha', file: cfgFile!, line: cfgLine('use_rslora'), message: `use_rslora is true with lora_alpha = ${alpha} ≥ r = ${r}: s = alpha/√r = ${fmt(alpha / Math.sqrt(r))}, √r = ${fmt(Math.sqrt(r))}× the alpha/r = ${fmt(alpha / r)} such an alpha is usually chosen for` });
    }
  }
  const maxS = adapter.format === 'mlx' ? th.scaleMaxMlx : th.scaleMax;
  const extreme = mods.filter((m) => Number.isFinite(m.scale) && (Math.abs(m.scale) > maxS || Math.abs(m.scale) < th.scaleMin) && !defaulted.includes(m));
  if (extreme.length) {
    const scales = [...new Set(extreme.map((m) => m.scale))];
    const line = cfgLine(adapter.format === 'mlx' ? 'scale' : 'lora_alpha');
    if (scales.length === 1) {
      add({ module: extreme.length === mods.length ? '' : extreme[0].name, code: 'scale-extreme', file: cfgFile ?? wfile, line, message: `${extreme.length === mods.length ? 'all modules' : `${extreme.length} module(s)`}: scale ${extreme[0].scaleSource} = ${fmt(extreme[0].scale)} is outside [${fmt(th.scaleMin)}, ${fmt(maxS)}]` });
    } else {
      for (const m of extreme) add({ module: m.name, code: 'scale-extreme', file: cfgFile ?? wfile, line, tensor: m.B.tensor.name, message: `${m.name}: scale ${m.scaleSource} = ${fmt(m.scale)} is outside [${fmt(th.scaleMin)}, ${fmt(maxS)}]` });
    }
  }

  // --- config vs modules ---------------------------------------------------------------------------
  if (cfg && adapter.format === 'peft') {
    const ltt = cfg.layers_to_transform;
    const layers = typeof ltt === 'number' ? [ltt] : Array.isArray(ltt) ? ltt.filter((x): x is number => typeof x === 'number') : undefined;
    for (const m of mods) {
      const inTargets = targeted(cfg, m.name);
      const inLayers = !layers || m.layer === undefined || layers.includes(m.layer);
      if (!inTargets || !inLayers) {
        add({
          module: m.name, code: 'untargeted-module', file: cfgFile!, line: cfgLine(inTargets ? 'layers_to_transform' : 'target_modules'), tensor: m.A.tensor.name,
          message: `${m.name} has LoRA factors but ${inTargets ? `its layer ${m.layer} is not in layers_to_transform` : `is not matched by target_modules ${JSON.stringify(cfg.target_modules)}${cfg.exclude_modules ? ` / exclude_modules ${JSON.stringify(cfg.exclude_modules)}` : ''}`}: PEFT does not create it, so these weights are ignored on load`,
        });
      }
    }
    if (Array.isArray(cfg.target_modules)) {
      for (const t of cfg.target_modules) {
        if (typeof t !== 'string') continue;
        if (!mods.some((m) => m.name === t || m.name.endsWith(`.${t}`))) {
          add({ module: '', code: 'target-unmatched', file: cfgFile!, line: jsonValueLine(cfgText, t, cfgLine('target_modules')), message: `target_modules entry "${t}" matches no module with LoRA factors in ${path.basename(wfile)}` });
        }
      }
    }
    for (const key of ['rank_pattern', 'alpha_pattern'] as const) {
      const pat = cfg[key];
      if (!pat || typeof pat !== 'object' || Array.isArray(pat)) continue;
      for (const k of Object.keys(pat)) {
        if (!mods.some((m) => matchPattern({ [k]: 1 }, m.name) !== undefined)) {
          add({ module: '', code: 'pattern-unmatched', file: cfgFile!, line: jsonKeyLine(cfgText, k) ?? cfgLine(key), message: `${key} key "${k}" matches no module (PEFT matches it against dotted suffixes of module names): it has no effect` });
        }
      }
    }
  }
  for (const w of adapter.warnings) {
    if (defaulted.length && /alpha|scale/i.test(w) && /assum|default|missing|no /i.test(w)) continue; // said by alpha-missing
    const rm = /^module "([^"]+)": config rank/.exec(w);
    if (rm) add({ module: rm[1], code: 'config-rank-mismatch', file: cfgFile ?? wfile, line: cfgLine('r'), message: w });
    else add({ module: '', code: 'load-warning', file: wfile, message: w });
  }

  // --- base model ------------------------------------------------------------------------------------
  if (inp.intruders) {
    for (const e of inp.intruders.errors) add({ module: e.name, code: 'base-mismatch', file: wfile, message: `${e.name}: ${e.message}` });
    for (const r of inp.intruders.modules) {
      if (r.count > 0) {
        add({ module: r.name, code: 'intruders', file: wfile, tensor: byName.get(r.name) ? mods.find((x) => x.name === r.name)?.B.tensor.name : undefined, message: `${r.name}: ${r.count} of the top ${r.k} singular vectors of W0 + ΔW are intruder dimensions (max |cos| with W0's singular vectors < ${r.epsilon}, ${r.mode}); lora-lens can scale them down (Intruder Dimensions → Mitigate)` });
      } else if (r.possible > 0) {
        add({ module: r.name, code: 'intruders', severity: 'info', file: wfile, message: `${r.name}: ${r.possible} of the top ${r.k} singular vectors of W0 + ΔW are possible intruders (approximate mode could not decide)` });
      }
    }
  }

  const sevOrder: Record<Severity, number> = { error: 0, warning: 1, info: 2 };
  findings.sort((a, b) => sevOrder[a.severity] - sevOrder[b.severity]);
  const summary: DoctorSummary = { modules: mods.length, error: 0, warning: 0, info: 0, codes: {} };
  for (const f of findings) { summary[f.severity]++; summary.codes[f.code] = (summary.codes[f.code] ?? 0) + 1; }
  return {
    adapter: { path: adapter.path, name: adapter.name, format: adapter.format, weightsFile: wfile, configFile: cfgFile },
    findings, summary, thresholds: th,
  };
}

export interface DoctorOptions {
  engine: Engine;
  /** Reuse an analysis of the same adapter. */
  report?: AdapterReport;
  base?: BaseModel;
  intruderMode?: 'auto' | 'exact' | 'approx';
  thresholds?: Partial<DoctorThresholds>;
}

/** Runs the analysis (unless given), the factor scans, the optional intruder analysis and the rules. */
export async function doctorAdapter(adapter: Adapter, opts: DoctorOptions): Promise<DoctorResult & { report: AdapterReport }> {
  const pre = scanningHook();
  const report = opts.report ?? await analyzeAdapter(adapter, { engine: opts.engine, onRawFactor: pre.hook });
  const scans = scanAdapter(adapter, pre.scans);
  let intruders: AdapterIntruders | undefined;
  if (opts.base) {
    const healthy = new Set(report.modules.filter((m) => !m.error && m.fro > 0).map((m) => m.name));
    intruders = await adapterIntruders(opts.engine, adapter, opts.base, { mode: opts.intruderMode ?? 'auto', filter: (m: LoraModule) => healthy.has(m.name) && !m.conv });
  }
  return { ...diagnose({ adapter, report, scans, intruders, thresholds: opts.thresholds }), report };
}
