/**
 * `lora-lens similarity A1 A2 ... [--json] [--provider cpu|webgpu|cuda]`
 * Split-invariant similarity of adapters (src/core/similarity). JSON: {"adapters", "matrix",
 * "signed", "columnSpace", "rowSpace", "shared", "aggregation", "tolerance", "modules", "skipped"}.
 */
import type { Adapter } from '../formats/adapter';
import { openAdapter } from '../formats/open';
import { Engine, ExecutionProvider } from '../engine/ort';
import { adapterSimilarity, SimilarityResult } from '../similarity/similarity';
import { bool, CliCommand, flag, toJson, UsageError } from './args';

export function formatSimilarity(r: SimilarityResult): string {
  const names = r.adapters.map((a, i) => `[${i}] ${a.name} (${a.format}, ${a.modules} modules)`);
  const w = 8;
  const head = ''.padEnd(5) + r.adapters.map((_a, i) => `[${i}]`.padStart(w)).join('');
  const rows = r.matrix.map((row, i) => `[${i}]`.padEnd(5) + row.map((x) => x.toFixed(4).padStart(w)).join(''));
  return [...names, '', 'energy-weighted |cos| of ΔW over shared modules (1 = same ΔW up to per-module factors):', head, ...rows,
    '', `shared modules: ${r.shared.map((row) => row.join(' ')).join(' | ')}`,
    ...r.skipped.slice(0, 20).map((s) => `skipped ${s.module}${s.adapter ? ` in ${s.adapter}` : ''}: ${s.reason}`),
    ...(r.skipped.length > 20 ? [`… ${r.skipped.length - 20} more skipped`] : [])].join('\n');
}

export const similarityCommand: CliCommand = {
  name: 'similarity',
  usage: 'lora-lens similarity A1 A2 ... [--json] [--provider cpu|webgpu|cuda]\n      ΔW similarity of adapters, invariant to B→BG, A→G⁻¹A: cosines and principal angles per module, N×N matrix',
  async run(argv) {
    const args = [...argv];
    const json = bool(args, '--json');
    const provider = (flag(args, '--provider') ?? 'cpu') as ExecutionProvider;
    const unknown = args.find((a) => a.startsWith('--'));
    if (unknown) throw new UsageError(`unknown option ${unknown}`);
    if (args.length < 2) throw new UsageError('give at least two adapters');
    const adapters: Adapter[] = [];
    const engine = new Engine({ provider });
    try {
      for (const p of args) adapters.push(openAdapter(p));
      const r = await adapterSimilarity(adapters, { engine });
      console.log(json ? toJson(r) : formatSimilarity(r));
      return 0;
    } finally {
      for (const a of adapters) a.store.close();
      await engine.dispose();
    }
  },
};
