/**
 * `lora-lens intruders ADAPTER --base DIR|FILE [--k 10] [--eps 0.5] [--mode auto|exact|approx] [--force] [--json | --jsonl]`
 *
 * Intruder dimensions (Shuttleworth et al., papers.md §2.2) of every adapter module against its
 * base model, headless (src/core/base/analyses.ts runIntruders, the extension's implementation).
 * --json: one object `{modules: [{module, intruders, possible, maxCos: [...], ...}], totals, ...}`;
 * --jsonl: one module record per line as soon as it is computed (whole-model runs).
 */
import { runIntruders } from '../base/analyses';
import type { IntruderModuleData } from "../../shared/base";
import { bool, type CliCommand, flag, numFlag, toJson, UsageError } from './args';
import { g4, jsonLine, posInt, positionals, withEngine } from './common';

/** The CLI record of one module (module = the adapter's module name). */
export function intruderRecord(m: IntruderModuleData): Record<string, unknown> {
  return {
    module: m.name, intruders: m.count, possible: m.possible,
    maxCos: m.vectors.map((v) => v.maxCos), sigma: m.vectors.map((v) => v.sigma), status: m.vectors.map((v) => v.status),
    baseTensor: m.baseTensor, m: m.m, n: m.n, mode: m.mode, baseVectors: m.baseVectors, layer: m.layer ?? null, kind: m.kind,
    vectors: m.vectors, notes: m.notes,
  };
}

export const intrudersCommand: CliCommand = {
  name: 'intruders',
  usage: 'lora-lens intruders ADAPTER --base DIR|FILE [--k 10] [--eps 0.5] [--mode auto|exact|approx] [--force] [--json | --jsonl]\n      intruder dimensions of every module against the base model',
  async run(argv) {
    const args = [...argv];
    const json = bool(args, '--json'), jsonl = bool(args, '--jsonl'), force = bool(args, '--force');
    const base = flag(args, '--base');
    const k = posInt(numFlag(args, '--k', 10), '--k');
    const eps = numFlag(args, '--eps', 0.5);
    const mode = flag(args, '--mode') ?? 'auto';
    const [adapter] = positionals(args, 1, 'ADAPTER');
    if (!base) throw new UsageError('--base DIR|FILE is required (the base model the adapter was trained on)');
    if (!(eps > 0 && eps < 1)) throw new UsageError(`--eps must be in (0, 1), got ${eps}`);
    if (mode !== 'auto' && mode !== 'exact' && mode !== 'approx') throw new UsageError(`--mode must be auto, exact or approx, got ${mode}`);
    if (json && jsonl) throw new UsageError('--json and --jsonl exclude each other');
    return withEngine(async (engine) => {
      const res = await runIntruders({ adapterPath: adapter, baseDir: base, k, epsilon: eps, mode, force }, { engine }, jsonl ? (m) => jsonLine(intruderRecord(m)) : undefined);
      if (jsonl) {
        for (const e of res.errors) jsonLine({ module: e.name, error: e.message });
        for (const w of res.warnings) process.stderr.write(`warning: ${w}\n`);
        return 0;
      }
      const { modules, ...rest } = res;
      if (json) {
        process.stdout.write(toJson({ modules: modules.map(intruderRecord), ...rest }) + '\n');
        return 0;
      }
      const lines = [`${res.adapter.name} vs ${res.base.dir}: ${res.totals.analysed}/${res.totals.modules} modules, ${res.totals.intruders} intruders, ${res.totals.possible} possible (k ${k}, ε ${eps}, ${res.engine.provider}, ${(res.ms / 1000).toFixed(1)} s)`,
        `${'module'.padEnd(48)} ${'m×n'.padStart(11)} ${'mode'.padStart(6)} ${'intr'.padStart(5)} ${'poss'.padStart(5)}  max|cos| of the top ${k} singular vectors of W0+ΔW`];
      for (const m of modules) {
        lines.push(`${m.name.padEnd(48)} ${`${m.m}×${m.n}`.padStart(11)} ${m.mode.padStart(6)} ${String(m.count).padStart(5)} ${String(m.possible).padStart(5)}  ${m.vectors.map((v) => g4(v.maxCos) + (v.status === 'intruder' ? '*' : v.status === 'possible' ? '?' : '')).join(' ')}`);
      }
      lines.push('(* intruder: max|cos| < ε with every base singular vector; ? possible: the bound straddles ε)');
      for (const e of res.errors) lines.push(`skipped ${e.name}: ${e.message}`);
      for (const w of res.warnings) lines.push(`warning: ${w}`);
      process.stdout.write(lines.join('\n') + '\n');
      return 0;
    });
  },
};
