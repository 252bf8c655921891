/**
 * `lora-lens report PATH [--format md|html] [--out FILE] [--base DIR] [--provider ...]`
 *   PATH = adapter            analysis + doctor + model card
 *   PATH = *.json             a saved `analyze --json`, `doctor --json` or `similarity --json` output
 *   PATH PATH2 ...            similarity report of the adapters
 * Markdown (default) or one self-contained HTML file; --out writes a NEW file atomically (temp +
 * rename; refuses to overwrite), stdout otherwise.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Adapter } from '../formats/adapter';
import { openAdapter } from '../formats/open';
import { FormatError } from '../formats/errors';
import { Engine, ExecutionProvider } from '../engine/ort';
import { openBaseModel } from '../base/basemodel';
import { doctorAdapter, DoctorResult } from '../doctor/doctor';
import { adapterSimilarity, SimilarityResult } from '../similarity/similarity';
import { adapterReportDoc, doctorReportDoc, similarityReportDoc } from '../report/build';
import type { ReportDoc } from '../report/doc';
import { toHtml, toMarkdown } from '../report/render';
import { writeNewFileAtomic } from '../formats/writer';
import type { AdapterReport } from '../../shared/report';
import { bool, CliCommand, flag, UsageError } from './args';

/** sha256 of a file, streamed in 8 MB chunks. */
export function sha256File(file: string): string {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(8 << 20);
    let n: number;
    while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/** Report document from a saved JSON result of analyze / doctor / similarity. */
export function docFromJson(file: string): ReportDoc {
  let j: Record<string, unknown>;
  try {
    const st = fs.statSync(file);
    if (st.size > 512_000_000) throw new FormatError(file, `is ${st.size} bytes; a saved result is at most 512 MB`);
    j = JSON.parse(fs.readFileSync(file, 'utf8'), (_k, v) => (v === 'NaN' ? NaN : v === 'Infinity' ? Infinity : v === '-Infinity' ? -Infinity : v));
  } catch (e) {
    if (e instanceof FormatError) throw e;
    throw new FormatError(file, `is not valid JSON (${(e as Error).message})`);
  }
  if (j && typeof j === 'object' && Array.isArray(j.modules) && j.tool === 'lora-lens' && j.adapter) return adapterReportDoc(j as unknown as AdapterReport);
  if (j && Array.isArray(j.findings) && j.adapter && j.summary) return doctorReportDoc(j as unknown as DoctorResult);
  if (j && Array.isArray(j.matrix) && Array.isArray(j.adapters) && j.modules) return similarityReportDoc(j as unknown as SimilarityResult);
  throw new FormatError(file, 'is not a saved LoRA Lens result (analyze --json, doctor --json or similarity --json)');
}

export const reportCommand: CliCommand = {
  name: 'report',
  usage: 'lora-lens report PATH [PATH2 ...] [--format md|html] [--out FILE] [--base DIR]\n      Markdown or self-contained HTML report (adapter + doctor + model card; a saved --json result; or similarity of several adapters)',
  async run(argv) {
    const args = [...argv];
    const format = flag(args, '--format') ?? 'md';
    if (format !== 'md' && format !== 'html') throw new UsageError(`--format must be md or html, not "${format}"`);
    const out = flag(args, '--out');
    const baseDir = flag(args, '--base');
    const provider = (flag(args, '--provider') ?? 'cpu') as ExecutionProvider;
    if (bool(args, '--json')) throw new UsageError('report writes md or html; use the command that produced the analysis for --json');
    const unknown = args.find((a) => a.startsWith('--'));
    if (unknown) throw new UsageError(`unknown option ${unknown}`);
    if (args.length === 0) throw new UsageError('PATH is missing');
    if (out && fs.existsSync(out)) throw new FormatError(out, 'already exists; report never overwrites a file (choose a new --out)');
    let doc: ReportDoc;
    if (args.length === 1 && args[0].toLowerCase().endsWith('.json') && path.basename(args[0]) !== 'adapter_config.json') doc = docFromJson(args[0]);
    else {
      const engine = new Engine({ provider });
      const adapters: Adapter[] = [];
      const base = baseDir ? openBaseModel(baseDir) : undefined;
      try {
        for (const p of args) adapters.push(openAdapter(p));
        if (adapters.length > 1) doc = similarityReportDoc(await adapterSimilarity(adapters, { engine }));
        else {
          const a = adapters[0];
          const d = await doctorAdapter(a, { engine, base });
          const { report, ...doctor } = d;
          let sha: string | undefined, size: number | undefined;
          try { sha = sha256File(a.weightsFile); size = fs.statSync(a.weightsFile).size; } catch { /* archive members etc.: no hash */ }
          doc = adapterReportDoc(report, doctor, { sha256: sha, fileBytes: size, params: a.modules.reduce((s, m) => s + m.A.tensor.numel + m.B.tensor.numel, 0) });
        }
      } finally {
        for (const a of adapters) a.store.close();
        base?.store.close();
        await engine.dispose();
      }
    }
    const text = format === 'html' ? toHtml(doc) : toMarkdown(doc);
    if (out) {
      try {
        writeNewFileAtomic(out, new TextEncoder().encode(text));
      } catch (e) {
        if (e instanceof Error && e.name === 'WriteError') throw e; // already names the output and the cause
        const code = (e as NodeJS.ErrnoException).code;
        throw new FormatError(out, code === 'ENOENT' ? 'cannot be written: its folder does not exist' : code ? `cannot be written (${code})` : (e as Error).message);
      }
      console.log(`wrote ${out} (${format}, ${text.length} characters)`);
    } else {
      process.stdout.on('error', (e: NodeJS.ErrnoException) => { if (e.code !== 'EPIPE') throw e; }); // `| head` is fine
      process.stdout.write(text);
    }
    return 0;
  },
};
