/**
 * Report builders: the adapter report (analysis + doctor + model card), the doctor report and the
 * similarity report, as ReportDoc (doc.ts) for render.ts or a webview panel.
 */
import type { AdapterReport, ModuleReport } from '../../shared/report';
import type { DoctorResult } from '../doctor/doctor';
import type { SimilarityResult } from '../similarity/similarity';
import type { Block, Cell, ReportDoc, Section } from './doc';
import { fmtNum } from './render';

const median = (xs: number[]): number => {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!v.length) return NaN;
  const h = v.length >> 1;
  return v.length % 2 ? v[h] : (v[h - 1] + v[h]) / 2;
};

export interface ModelCardInfo {
  /** sha256 of the weights file, when computed by the caller. */
  sha256?: string;
  fileBytes?: number;
  params?: number;
}

function doctorSummaryText(d: DoctorResult | undefined): string {
  if (!d) return 'not run';
  const s = d.summary;
  const codes = Object.entries(s.codes).sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ×${n}`).join(', ');
  return `${s.error} error(s), ${s.warning} warning(s), ${s.info} info${codes ? ` (${codes})` : ''}`;
}

function rankPatternText(mods: ModuleReport[], r?: number): string {
  const ranks = new Map<number, number>();
  for (const m of mods) ranks.set(m.rank, (ranks.get(m.rank) ?? 0) + 1);
  if (ranks.size <= 1) return `none (all ${mods.length} modules r = ${mods[0]?.rank ?? r ?? '?'})`;
  return [...ranks.entries()].sort((a, b) => a[0] - b[0]).map(([k, n]) => `r = ${k}: ${n} modules`).join('; ');
}

function scaleRuleText(mods: ModuleReport[], rep: AdapterReport): string {
  const rules = new Map<string, number>();
  for (const m of mods) rules.set(`${m.scaleSource} = ${fmtNum(m.scale)}`, (rules.get(`${m.scaleSource} = ${fmtNum(m.scale)}`) ?? 0) + 1);
  const list = [...rules.entries()].sort((a, b) => b[1] - a[1]);
  const head = list.slice(0, 3).map(([k, n]) => (list.length > 1 ? `${k} (${n} modules)` : k)).join('; ');
  return `${head}${list.length > 3 ? `; … ${list.length - 3} more` : ''}${rep.adapter.useRslora ? ' [rsLoRA]' : ''}${rep.adapter.useDora ? ' [DoRA]' : ''}`;
}

/** The model-card block: a Markdown snippet ready to paste into a model card (README.md of a Hub repo). */
export function modelCardMarkdown(rep: AdapterReport, doctor?: DoctorResult, info: ModelCardInfo = {}): string {
  const a = rep.adapter;
  const ok = rep.modules.filter((m) => !m.error);
  const top = [...ok].sort((x, y) => y.spectral - x.spectral)[0];
  const esc = (s: string): string => s.replace(/\|/g, '\\|').replace(/</g, '&lt;').replace(/\r?\n/g, ' ');
  const rows: [string, string][] = [
    ['Base model', a.baseModel ?? 'not recorded'],
    ['Adapter format', `${a.format}${a.useDora ? ' (DoRA)' : ''}`],
    ['Target modules', a.targetModules.length ? a.targetModules.join(', ') : [...new Set(rep.modules.map((m) => m.kind))].join(', ')],
    ['Rank', `${a.rank ?? rep.modules[0]?.rank ?? '?'}`],
    ['Rank pattern', rankPatternText(rep.modules, a.rank)],
    ['Scale rule', scaleRuleText(rep.modules, rep)],
    ['LoRA modules', `${rep.modules.length}${info.params ? ` (${info.params.toLocaleString('en-US')} parameters)` : ''}`],
    ['‖ΔW‖_F per module', `median ${fmtNum(median(ok.map((m) => m.fro)))}, max ${fmtNum(Math.max(...ok.map((m) => m.fro), 0))}`],
    ['Largest σ₁(ΔW)', top ? `${fmtNum(top.spectral)} (${top.name})` : '–'],
    ['Effective rank (median)', `${fmtNum(median(ok.map((m) => m.effectiveRank)))} of r = ${a.rank ?? rep.modules[0]?.rank ?? '?'}`],
    ['Stable rank (median)', fmtNum(median(ok.map((m) => m.stableRank)))],
    ['Balance gap (median)', `${fmtNum(median(ok.map((m) => m.balanceGap)))} (0 = balanced factors)`],
    ['Doctor', doctorSummaryText(doctor)],
  ];
  if (info.sha256) rows.push(['Weights', `${a.weightsFile.split(/[\\/]/).pop()} (${info.fileBytes ?? '?'} bytes, sha256 ${info.sha256})`]);
  return ['### LoRA adapter', '', '| | |', '|---|---|', ...rows.map(([k, v]) => `| ${esc(k)} | ${esc(v)} |`), '',
    `<sub>Measured by LoRA Lens ${rep.version} from the adapter files (ΔW = s·B·A, never formed; σ from r×r cores).</sub>`].join('\n');
}

function findingsBlock(d: DoctorResult): Block {
  return { kind: 'findings', findings: d.findings.map((f) => ({ severity: f.severity, code: f.code, module: f.module, message: f.message })) };
}

/** Adapter report: overview, model card, doctor, charts, per-module table. */
export function adapterReportDoc(rep: AdapterReport, doctor?: DoctorResult, info: ModelCardInfo = {}): ReportDoc {
  const a = rep.adapter;
  const mods = rep.modules;
  const ok = mods.filter((m) => !m.error);
  const sections: Section[] = [];
  sections.push({
    id: 'overview', title: 'Overview', blocks: [{
      kind: 'facts', rows: [
        ['Path', a.path], ['Weights file', a.weightsFile], ['Format', a.format], ['Base model', a.baseModel ?? 'not recorded'],
        ['Modules', mods.length], ['Modules with errors', mods.length - ok.length], ['Rank (config)', a.rank ?? null], ['lora_alpha', a.alpha ?? null],
        ['rsLoRA', a.useRslora ? 'yes' : 'no'], ['DoRA', a.useDora ? 'yes' : 'no'], ['Engine', `onnxruntime ${rep.engine.provider}`],
        ['Analysis time', `${rep.timings.totalMs.toFixed(0)} ms`],
      ],
    }],
  });
  sections.push({
    id: 'model-card', title: 'Model card', blocks: [
      { kind: 'text', text: 'Paste this Markdown into the model card (README.md) of the adapter:' },
      { kind: 'code', language: 'markdown', text: modelCardMarkdown(rep, doctor, info) },
    ],
  });
  if (doctor) sections.push({ id: 'doctor', title: `Doctor (${doctorSummaryText(doctor)})`, blocks: [findingsBlock(doctor)] });
  const labels = mods.map((m) => m.name);
  const val = (f: (m: ModuleReport) => number): number[] => mods.map((m) => (m.error ? NaN : f(m)));
  sections.push({
    id: 'charts', title: 'Charts', blocks: [
      { kind: 'chart', title: 'σ₁(ΔW) per module', chart: { kind: 'bars', labels, values: val((m) => m.spectral), yLabel: 'σ₁', log: true }, caption: 'largest singular value of s·B·A, log scale' },
      { kind: 'chart', title: 'Effective rank per module', chart: { kind: 'bars', labels, values: val((m) => m.effectiveRank), yLabel: 'effective rank', marks: mods.map((m) => m.rank) }, caption: 'exp(entropy of σ/Σσ); red tick = rank r' },
      { kind: 'chart', title: 'Balance gap per module', chart: { kind: 'bars', labels, values: val((m) => m.balanceGap), yLabel: 'gap' }, caption: '‖BᵀB − AAᵀ‖_F / (‖A‖² + ‖B‖²); 0 = balanced' },
      {
        kind: 'chart', title: 'Normalised spectra σᵢ/σ₁', caption: `${Math.min(ok.length, 200)} modules`,
        chart: { kind: 'lines', lines: ok.filter((m) => m.spectral > 0).slice(0, 200).map((m) => ({ name: m.name, y: m.sigma.map((s) => s / m.spectral) })), xLabel: 'index i', yLabel: 'σᵢ/σ₁', log: true },
      },
    ],
  });
  const rows: Cell[][] = mods.map((m) => [m.name, m.rank, m.scale, m.dtype, m.error ? m.error : m.spectral, m.error ? null : m.fro, m.error ? null : m.effectiveRank,
    m.error ? null : m.stableRank, m.error ? null : m.kappaA, m.error ? null : m.kappaB, m.error ? null : m.balanceGap]);
  sections.push({
    id: 'modules', title: 'Modules', blocks: [{
      kind: 'table', columns: ['module', 'r', 'scale', 'dtype', 'σ₁', '‖ΔW‖_F', 'eff. rank', 'stable rank', 'κ(A)', 'κ(B)', 'gap'],
      numeric: [false, true, true, false, true, true, true, true, true, true, true], rows,
    }],
  });
  if (rep.warnings.length) sections.push({ id: 'warnings', title: 'Reader warnings', blocks: rep.warnings.map((w) => ({ kind: 'text', text: w })) });
  return { title: `LoRA adapter report: ${a.name}`, subtitle: `${a.format} adapter, ${mods.length} modules${a.baseModel ? `, base ${a.baseModel}` : ''}`, generated: rep.createdAt, sections };
}

/** Doctor report on its own. */
export function doctorReportDoc(d: DoctorResult, generated = new Date().toISOString()): ReportDoc {
  const codes = Object.entries(d.summary.codes).sort((a, b) => b[1] - a[1]);
  return {
    title: `Adapter doctor: ${d.adapter.name}`, subtitle: `${d.adapter.format} adapter, ${d.summary.modules} modules — ${doctorSummaryText(d)}`, generated,
    sections: [
      { id: 'summary', title: 'Summary', blocks: [{ kind: 'facts', rows: [['Path', d.adapter.path], ['Errors', d.summary.error], ['Warnings', d.summary.warning], ['Info', d.summary.info]] },
        { kind: 'table', columns: ['code', 'findings'], numeric: [false, true], rows: codes.map(([c, n]) => [c, n]) }] },
      { id: 'findings', title: 'Findings', blocks: [findingsBlock(d)] },
    ],
  };
}

/** Similarity report: heatmaps and the most similar / dissimilar modules. */
export function similarityReportDoc(s: SimilarityResult, generated = new Date().toISOString()): ReportDoc {
  const labels = s.adapters.map((a) => a.name);
  const pairs: Cell[][] = [];
  for (const [name, m] of Object.entries(s.modules)) {
    for (const p of m.pairs) pairs.push([name, `${p.i} × ${p.j}`, p.cosine, p.colOverlap, p.rowOverlap, p.colAnglesDeg[0] ?? null, m.norms[p.i], m.norms[p.j]]);
  }
  pairs.sort((a, b) => Math.abs(b[2] as number) - Math.abs(a[2] as number));
  return {
    title: `Adapter similarity (${s.adapters.length} adapters)`, subtitle: s.aggregation, generated,
    sections: [
      { id: 'adapters', title: 'Adapters', blocks: [{ kind: 'table', columns: ['#', 'name', 'format', 'modules', 'path'], numeric: [true, false, false, true, false], rows: s.adapters.map((a, i) => [i, a.name, a.format, a.modules, a.path]) }] },
      {
        id: 'matrix', title: 'Similarity matrix', blocks: [
          { kind: 'chart', title: 'Energy-weighted |cos| of ΔW', chart: { kind: 'heatmap', labels, values: s.matrix, legend: '|cos|, energy-weighted' } },
          { kind: 'chart', title: 'Column-space overlap', chart: { kind: 'heatmap', labels, values: s.columnSpace, legend: 'mean cos² of principal angles' } },
          { kind: 'chart', title: 'Row-space overlap', chart: { kind: 'heatmap', labels, values: s.rowSpace, legend: 'mean cos² of principal angles' } },
          { kind: 'table', columns: ['', ...labels.map((_l, i) => `[${i}]`)], numeric: [false, ...labels.map(() => true)], rows: s.matrix.map((r, i) => [`[${i}] ${labels[i]}`, ...r]), note: 'Shared modules per pair: ' + s.shared.map((r) => r.join(' ')).join(' | ') },
        ],
      },
      { id: 'modules', title: 'Module pairs (by |cos|)', blocks: [{ kind: 'table', columns: ['module', 'pair', 'cos', 'col overlap', 'row overlap', 'smallest col angle °', '‖ΔW_i‖', '‖ΔW_j‖'], numeric: [false, false, true, true, true, true, true, true], rows: pairs.slice(0, 500), note: pairs.length > 500 ? `first 500 of ${pairs.length} pairs` : undefined }] },
      ...(s.skipped.length ? [{ id: 'skipped', title: 'Skipped modules', blocks: [{ kind: 'table' as const, columns: ['module', 'adapter', 'reason'], rows: s.skipped.map((x) => [x.module, x.adapter ?? '', x.reason] as Cell[]) }] }] : []),
    ],
  };
}
