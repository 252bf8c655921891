/**
 * Fleets: analyse every adapter under a folder and yield one summary record per adapter (the rows
 * of the "Analyze Folder" table and of `lora-lens analyze DIR --recursive --jsonl`). A file that
 * cannot be read yields an error record with its path and the run goes on.
 *
 * Per adapter: the full analysis (σ of every module's ΔW, factor Grams on onnxruntime) and the
 * doctor (bit scan + rules), reduced to one line of numbers. The aggregation over modules:
 *   sigma1          max over modules of σ₁(ΔW)            (the strongest direction anywhere)
 *   effectiveRank   median over modules (exp-entropy of σ)
 *   stableRank      median over modules
 *   gap             median balance gap ‖BᵀB − AAᵀ‖_F/(‖A‖²+‖B‖²)
 *   scale           the most common module scale; scaleMin/scaleMax its range (rank/alpha patterns)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { Adapter } from '../formats/adapter';
import { detectCheckpoints, openAdapter } from '../formats/open';
import { Engine, type ExecutionProvider } from '../engine/ort';
import { analyzeAdapter } from '../analysis/lora';
import { diagnose, scanAdapter, scanningHook } from '../doctor/doctor';
import type { AdapterReport } from '../../shared/report';
import type { FleetEntry, FleetError, FleetRecord } from '../../shared/fleet';

export type { FleetEntry, FleetError, FleetRecord };

const median = (xs: number[]): number | null => {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!v.length) return null;
  const h = v.length >> 1;
  return v.length % 2 ? v[h] : (v[h - 1] + v[h]) / 2;
};

/** One adapter's record from its analysis and doctor result. */
export function fleetRecord(adapter: Adapter, report: AdapterReport, doctor: ReturnType<typeof diagnose>, ms: number): FleetRecord {
  const mods = report.modules;
  const ok = mods.filter((m) => !m.error);
  const scaleCount = new Map<number, { n: number; rule: string }>();
  for (const m of mods) {
    const e = scaleCount.get(m.scale) ?? { n: 0, rule: m.scaleSource };
    e.n++;
    scaleCount.set(m.scale, e);
  }
  let scale: number | null = null, rule = '';
  let best = -1;
  for (const [s, e] of scaleCount) if (e.n > best) { best = e.n; scale = s; rule = e.rule; }
  const scales = mods.map((m) => m.scale).filter(Number.isFinite);
  const dtypes = [...new Set(mods.map((m) => m.dtype))];
  let bytes = 0;
  try { bytes = fs.statSync(adapter.weightsFile).size; } catch { bytes = adapter.store.totalBytes; }
  const s = adapter.summary;
  const sigma1 = ok.length ? Math.max(...ok.map((m) => m.spectral)) : null;
  return {
    path: adapter.path, ok: true, name: adapter.name, format: adapter.format, base: s.baseModel ?? null,
    r: s.rank ?? mods[0]?.rank ?? null, ranks: [...new Set(mods.map((m) => m.rank))].sort((a, b) => a - b),
    alpha: s.alpha ?? null, scale, scaleMin: scales.length ? Math.min(...scales) : null, scaleMax: scales.length ? Math.max(...scales) : null,
    scaleRule: rule, rslora: s.useRslora, dora: s.useDora || mods.some((m) => m.dora), modules: mods.length,
    params: adapter.modules.reduce((a, m) => a + m.A.tensor.numel + m.B.tensor.numel, 0), bytes, dtype: dtypes.join('/'),
    sigma1: sigma1 !== null && Number.isFinite(sigma1) ? sigma1 : null,
    effectiveRank: median(ok.map((m) => m.effectiveRank)), stableRank: median(ok.map((m) => m.stableRank)), gap: median(ok.map((m) => m.balanceGap)),
    findings: doctor.findings.length, errors: doctor.summary.error, warnings: doctor.summary.warning, infos: doctor.summary.info,
    codes: doctor.summary.codes, moduleErrors: mods.length - ok.length, ms,
  };
}

/** Analyses one adapter path into a fleet entry; never throws for a bad file. */
export async function analyzeOne(p: string, engine: Engine): Promise<FleetEntry> {
  const t0 = performance.now();
  let adapter: Adapter;
  try {
    adapter = openAdapter(p);
  } catch (e) {
    return { path: p, ok: false, error: (e as Error).message };
  }
  try {
    const pre = scanningHook();
    const report = await analyzeAdapter(adapter, { engine, onRawFactor: pre.hook });
    const doc = diagnose({ adapter, report, scans: scanAdapter(adapter, pre.scans) });
    return fleetRecord(adapter, report, doc, performance.now() - t0);
  } catch (e) {
    const msg = (e as Error).message;
    return { path: p, ok: false, error: msg.startsWith(p) ? msg : `${p}: ${msg}` };
  } finally {
    adapter.store.close();
  }
}

/** Adapter candidates under a folder: adapter folders and single weight files (models included; they yield error records). */
export function fleetPaths(dir: string): string[] {
  const refs = detectCheckpoints(dir, { maxDepth: 64, maxEntries: 2_000_000 });
  return refs.filter((r) => r.kind !== 'sharded' && r.kind !== 'model-folder').map((r) => r.path);
}

export interface FleetOptions {
  /**
   * Adapters analysed at once, each in its own worker thread with a 1-thread onnxruntime session;
   * 1 = in this thread with a 2-thread session. Default: 1 on ≤ 2 CPUs (measured on the 2-core
   * machine: 399 vs 302 MB/s per 2 CPU-seconds, jobs 1 vs 2, docs/benchmarks.md), else CPUs/2 (≤ 4).
   */
  jobs?: number;
  provider?: ExecutionProvider;
  /** Candidate paths (default: fleetPaths(dir)). */
  paths?: string[];
}

/**
 * Yields one entry per adapter candidate under `dir`, in walk order. With jobs > 1 the adapters are
 * analysed by worker threads (reading, bf16 conversion and the doctor scan are single-threaded
 * JavaScript, so one adapter per core beats one adapter with a 2-thread ORT session); results are
 * re-ordered to walk order and streamed as soon as the next one in order is done.
 */
export async function* analyzeFleet(dir: string, engine: Engine, opts: FleetOptions = {}): AsyncGenerator<FleetEntry> {
  const paths = opts.paths ?? fleetPaths(dir);
  const cpus = os.cpus().length;
  const jobs = Math.max(1, Math.min(opts.jobs ?? (cpus <= 2 ? 1 : Math.min(Math.floor(cpus / 2), 4)), paths.length));
  if (jobs <= 1) {
    for (const p of paths) yield await analyzeOne(p, engine);
    return;
  }
  // The worker loads this very module (bundled: dist/cli.js) and starts fleetWorker() below.
  const code = `require(${JSON.stringify(__filename)});`;
  const workers: Worker[] = [];
  const done = new Map<number, FleetEntry>();
  let wake: (() => void) | undefined;
  let next = 0;
  let failure: Error | undefined;
  const feed = (w: Worker): void => {
    if (next < paths.length) { const id = next++; w.postMessage({ id, path: paths[id] }); }
  };
  try {
    for (let k = 0; k < jobs; k++) {
      const w = new Worker(code, { eval: true, workerData: { loraLensFleet: true, provider: opts.provider ?? engine.provider } });
      w.on('message', (m: { id: number; entry: FleetEntry }) => { done.set(m.id, m.entry); feed(w); wake?.(); });
      w.on('error', (e) => { failure = e; wake?.(); });
      workers.push(w);
      feed(w);
    }
    for (let i = 0; i < paths.length; i++) {
      while (!done.has(i)) {
        if (failure) throw failure;
        await new Promise<void>((r) => { wake = r; });
        wake = undefined;
      }
      const e = done.get(i)!;
      done.delete(i);
      yield e;
    }
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

/** Worker side of analyzeFleet: analyses the paths it is sent with its own 1-thread engine. */
function fleetWorker(): void {
  const engine = new Engine({ provider: (workerData as { provider?: ExecutionProvider }).provider ?? 'cpu', intraOpThreads: 1 });
  parentPort!.on('message', (m: { id: number; path: string }) => {
    analyzeOne(m.path, engine).then(
      (entry) => parentPort!.postMessage({ id: m.id, entry }),
      (e: Error) => parentPort!.postMessage({ id: m.id, entry: { path: m.path, ok: false, error: e.message } }),
    );
  });
}

if (!isMainThread && parentPort && (workerData as { loraLensFleet?: boolean } | undefined)?.loraLensFleet) fleetWorker();
