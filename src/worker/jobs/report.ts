/**
 * Worker job `peers.report`: exports an analysis as Markdown or one self-contained HTML file
 * (src/core/report). The adapter, doctor and similarity documents come from the core builders;
 * fleet, merge and extract results have no core builder yet, so their ReportDoc (facts + one
 * table, plain data shaping, no compute) is assembled here.
 */
import * as fs from 'node:fs';
import { sha256File } from '../../core/cli/report';
import { doctorAdapter, type DoctorResult } from '../../core/doctor/doctor';
import { openAdapter } from '../../core/formats/open';
import { adapterReportDoc, doctorReportDoc, similarityReportDoc } from '../../core/report/build';
import type { ReportDoc } from '../../core/report/doc';
import { toHtml, toMarkdown } from '../../core/report/render';
import type { SimilarityResult } from '../../core/similarity/similarity';
import { writeNewFileAtomic } from '../../core/formats/writer';
import type { FleetView } from '../../shared/fleet';
import type { ExtractView } from '../../shared/extract';
import { ExportReport } from '../../shared/jobs';
import type { MergeView } from '../../shared/merge';
import type { ReportParams, ReportResult, ReportSource } from '../../shared/peers';
import { handle, type JobContext, type JobHandler } from './registry';

async function adapterDoc(p: string, ctx: JobContext): Promise<ReportDoc> {
  const a = openAdapter(p);
  try {
    ctx.progress(0, 2, 'analysing');
    const { report, ...doctor } = await doctorAdapter(a, { engine: ctx.engine });
    ctx.progress(1, 2, 'hashing the weights');
    let sha: string | undefined, size: number | undefined;
    try { sha = sha256File(a.weightsFile); size = fs.statSync(a.weightsFile).size; } catch { /* archive members: no hash */ }
    return adapterReportDoc(report, doctor, { sha256: sha, fileBytes: size, params: a.modules.reduce((s, m) => s + m.A.tensor.numel + m.B.tensor.numel, 0) });
  } finally {
    a.store.close();
  }
}

function fleetDoc(v: FleetView): ReportDoc {
  const ok = v.entries.filter((e) => e.ok);
  return {
    title: `Adapter fleet: ${v.dir}`, subtitle: `${v.entries.length} adapters, ${v.entries.length - ok.length} unreadable`, generated: new Date().toISOString(),
    sections: [{
      id: 'adapters', title: 'Adapters', blocks: [{
        kind: 'table', columns: ['adapter', 'format', 'base', 'r', 'scale', 'σ₁', 'eff. rank', 'gap', 'findings', 'error'],
        numeric: [false, false, false, true, true, true, true, true, true, false],
        rows: v.entries.map((e) => (e.ok
          ? [e.path, e.format, e.base, e.r, e.scale, e.sigma1, e.effectiveRank, e.gap, `${e.errors} E / ${e.warnings} W / ${e.infos} I`, null]
          : [e.path, null, null, null, null, null, null, null, null, e.error])),
      }],
    }],
  };
}

function mergeDoc(v: MergeView): ReportDoc {
  const p = v.preview;
  const r = v.result;
  const sections: ReportDoc['sections'] = [{
    id: 'inputs', title: 'Inputs', blocks: [{ kind: 'facts', rows: [
      ...v.params.paths.map((x, i): [string, string] => [`Adapter ${i + 1} (weight ${v.params.weights[i]})`, x]),
      ['Method', p.method], ['Density', p.density ?? null],
    ] }],
  }, {
    id: 'preview', title: 'Preview', blocks: [{
      kind: 'table', columns: ['module', 'level', 'overlap', 'sign conflict', 'energy kept'], numeric: [false, false, true, true, true],
      rows: p.modules.map((m) => [m.name, m.level, m.overlap, m.signConflict, m.retainedEnergy]),
    }],
  }];
  if (r) sections.push({
    id: 'result', title: `Written: ${r.outDir} (${r.verification.passed ? 'verified' : 'verification FAILED'})`, blocks: [
      { kind: 'facts', rows: [['Output', r.outDir], ['Max abs error', r.verification.maxAbsError], ['Max rel error', r.verification.maxRelError]] },
      { kind: 'table', columns: ['module', 'rank', 'rel. err to linear sum', 'max abs error'], numeric: [false, true, true, true], rows: r.perModule.map((m) => [m.name, m.rank, m.relErrToLinear, m.maxAbsError]) },
    ],
  });
  return { title: `Adapter merge (${p.method})`, subtitle: v.names.join(' + '), generated: new Date().toISOString(), sections };
}

function extractDoc(v: ExtractView): ReportDoc {
  const r = v.result;
  if (!r) throw new Error('the extraction has not finished; nothing to export yet');
  return {
    title: `LoRA extracted: ${r.outDir}`, subtitle: `${r.rule}, ${r.summary.modules} modules`, generated: new Date().toISOString(),
    sections: [
      { id: 'summary', title: 'Summary', blocks: [{ kind: 'facts', rows: [['Base', r.base], ['Fine-tuned', r.tuned], ['Rule', r.rule], ['Mean relative error', r.summary.meanRelError], ['Max relative error', r.summary.maxRelError], ['Parameters', r.summary.parameters]] }] },
      { id: 'modules', title: 'Modules', blocks: [{ kind: 'table', columns: ['module', 'rank', 'relative error', 'Frobenius kept', 'optimality'], numeric: [false, true, true, true, true], rows: r.modules.map((m) => [m.name, m.rank, m.relError, m.froKept, m.optimality]) }] },
    ],
  };
}

async function documentOf(s: ReportSource, ctx: JobContext): Promise<ReportDoc> {
  switch (s.kind) {
    case 'adapter': return adapterDoc(s.path, ctx);
    // The views carry the core's own result objects (fields the builders read are all present).
    case 'doctor': return doctorReportDoc(s.result as unknown as DoctorResult);
    case 'similarity': return similarityReportDoc(s.result as SimilarityResult);
    case 'fleet': return fleetDoc(s.view);
    case 'merge': return mergeDoc(s.view);
    case 'extract': return extractDoc(s.view);
  }
}

export async function reportJob(p: ReportParams, ctx: JobContext): Promise<ReportResult> {
  const doc = await documentOf(p.source, ctx);
  const text = p.format === 'html' ? toHtml(doc) : toMarkdown(doc);
  writeNewFileAtomic(p.out, new TextEncoder().encode(text));
  return { out: p.out, format: p.format, chars: text.length, title: doc.title };
}

export const reportHandlers: JobHandler[] = [handle(ExportReport, reportJob)];
