/**
 * `lora-lens analyze PATH [--json | --csv] [--method auto|householder] [--provider cpu|webgpu|cuda]`
 * `lora-lens analyze DIR --recursive [--jsonl] [--provider ...]`
 *
 * One adapter: the per-module report (table, JSON or CSV). With --recursive: every adapter under
 * DIR (src/core/fleet), one record per adapter as it is analysed — JSON Lines with --jsonl (a file
 * that cannot be read is a record {"path", "ok": false, "error"}; the run goes on), a table
 * otherwise. The exit code is 0 when the walk completed, also when some records are errors.
 */
import * as fs from 'node:fs';
import { analyzeAdapter } from '../analysis/lora';
import { Engine, ExecutionProvider } from '../engine/ort';
import { openAdapter } from '../formats/open';
import { FormatError } from '../formats/errors';
import { analyzeFleet, analyzeOne, FleetEntry } from '../fleet/fleet';
import { fmt4, reportToCsv } from '../../shared/report';
import { bool, CliCommand, flag, toJson, UsageError } from './args';

const PROVIDERS = ['cpu', 'webgpu', 'cuda'];

function fleetLine(e: FleetEntry): string {
  if (!e.ok) return `${e.path}\terror: ${e.error}`;
  return [e.path, e.format, e.r ?? '–', fmt4(e.scale ?? NaN), fmt4(e.sigma1 ?? NaN), fmt4(e.effectiveRank ?? NaN), fmt4(e.gap ?? NaN), `${e.findings} findings (${e.errors} errors)`].join('\t');
}

/** Set when stdout's reader went away (`... | head`): the walk stops quietly. */
let stdoutClosed = false;
let stdoutWatched = false;
function watchStdout(): void {
  if (stdoutWatched) return;
  stdoutWatched = true;
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE' || e.code === 'ERR_STREAM_DESTROYED') { stdoutClosed = true; return; }
    throw e;
  });
}

/** Writes a line to stdout, waiting when the pipe is full (so huge fleets stream with bounded memory). */
function writeLine(s: string): Promise<void> {
  watchStdout();
  return new Promise((resolve) => {
    if (stdoutClosed) { resolve(); return; }
    const onError = (): void => resolve();
    process.stdout.once('error', onError);
    const done = (): void => { process.stdout.off('error', onError); resolve(); };
    if (process.stdout.write(s + '\n')) done();
    else process.stdout.once('drain', done);
  });
}

export const analyzeCommand: CliCommand = {
  name: 'analyze',
  usage: 'lora-lens analyze PATH [--json | --csv] [--method auto|householder] [--provider cpu|webgpu|cuda]\n' +
    'lora-lens analyze DIR --recursive [--jsonl] [--jobs n]   one record per adapter under DIR (format, base, r, scale, σ₁, effective rank, gap, doctor findings)',
  async run(argv) {
    const args = [...argv];
    const json = bool(args, '--json');
    const jsonl = bool(args, '--jsonl');
    const csv = bool(args, '--csv');
    const recursive = bool(args, '--recursive') || bool(args, '-r');
    const method = flag(args, '--method') ?? 'auto';
    if (method !== 'auto' && method !== 'householder') throw new UsageError(`--method must be auto or householder, not "${method}"`);
    const jobsFlag = flag(args, '--jobs');
    const jobs = jobsFlag === undefined ? undefined : Number(jobsFlag);
    if (jobs !== undefined && !(Number.isInteger(jobs) && jobs >= 1 && jobs <= 64)) throw new UsageError(`--jobs must be an integer from 1 to 64, not "${jobsFlag}"`);
    const provider = flag(args, '--provider') ?? 'cpu';
    if (!PROVIDERS.includes(provider)) throw new UsageError(`--provider must be one of ${PROVIDERS.join(', ')}, not "${provider}"`);
    if (args.length !== 1) throw new UsageError(args.length ? `expected one PATH, got ${args.join(' ')}` : 'PATH is missing');
    const target = args[0];
    const engine = new Engine({ provider: provider as ExecutionProvider });
    try {
      if (recursive) {
        let st: fs.Stats;
        try { st = fs.statSync(target); } catch { throw new FormatError(target, 'does not exist'); }
        if (!st.isDirectory()) throw new FormatError(target, 'is not a folder (--recursive walks a folder)');
        if (!jsonl && !json) await writeLine(['path', 'format', 'r', 'scale', 'σ1', 'eff.rank', 'gap', 'doctor'].join('\t'));
        const all: FleetEntry[] = [];
        for await (const e of analyzeFleet(target, engine, { jobs })) {
          if (stdoutClosed) break;
          if (jsonl) await writeLine(JSON.stringify(e, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)));
          else if (json) all.push(e);
          else await writeLine(fleetLine(e));
        }
        if (json) console.log(toJson(all));
        return 0;
      }
      if (jsonl) {
        // One adapter as one fleet record (the same line `--recursive --jsonl` prints for it).
        const e = await analyzeOne(target, engine);
        await writeLine(JSON.stringify(e, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)));
        if (!e.ok) throw new FormatError(target, e.error.startsWith(target) ? e.error.slice(target.length + 2) : e.error);
        return 0;
      }
      const adapter = openAdapter(target);
      try {
        const report = await analyzeAdapter(adapter, { engine, method });
        if (json) console.log(toJson(report));
        else if (csv) process.stdout.write(reportToCsv(report));
        else {
          console.log(`${report.adapter.name} (${report.adapter.format}): ${report.modules.length} modules, engine ${report.engine.provider}, ${report.timings.totalMs.toFixed(1)} ms`);
          console.log('module'.padEnd(48), 'r'.padStart(4), 'scale'.padStart(8), 'σ1'.padStart(10), '‖ΔW‖F'.padStart(10), 'srank'.padStart(7), 'κ(A)'.padStart(9), 'κ(B)'.padStart(9), 'gap'.padStart(9));
          for (const m of report.modules) {
            if (m.error) { console.log(m.name.padEnd(48), `error: ${m.error}`); continue; }
            console.log(m.name.padEnd(48), String(m.rank).padStart(4), fmt4(m.scale).padStart(8), fmt4(m.spectral).padStart(10), fmt4(m.fro).padStart(10),
              fmt4(m.stableRank).padStart(7), fmt4(m.kappaA).padStart(9), fmt4(m.kappaB).padStart(9), fmt4(m.balanceGap).padStart(9));
          }
          for (const w of report.warnings) console.log(`warning: ${w}`);
        }
      } finally {
        adapter.store.close();
      }
      return 0;
    } finally {
      await engine.dispose();
    }
  },
};
