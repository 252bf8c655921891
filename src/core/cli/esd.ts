/**
 * `lora-lens esd FILE|DIR [--full] [--k 64] [--filter TEXT] [--json | --jsonl]`
 *
 * WeightWatcher-style empirical spectral density metrics, one row per 2-D weight tensor, with
 * WeightWatcher's column names (alpha, alpha_weighted, log_norm, log_spectral_norm, stable_rank,
 * entropy, mp_softrank, num_pl_spikes, ...). Spectra are exact when the smaller side is ≤ 1024 (or
 * with --full); above, only the top-k singular values are computed and alpha / entropy /
 * matrix_rank are null (they need the whole spectrum); norm-based columns are exact either way
 * (src/core/base/analyses.ts esdRows).
 */
import { esdRows } from '../base/analyses';
import { bool, type CliCommand, flag, numFlag, toJson, UsageError } from './args';
import { g4, jsonLine, posInt, positionals, withEngine } from './common';

export const esdCommand: CliCommand = {
  name: 'esd',
  usage: 'lora-lens esd FILE|DIR [--full] [--k 64] [--filter TEXT] [--json | --jsonl]\n      WeightWatcher metrics (alpha, log_norm, stable_rank, ...) of every 2-D weight tensor',
  async run(argv) {
    const args = [...argv];
    const json = bool(args, '--json'), jsonl = bool(args, '--jsonl'), full = bool(args, '--full');
    const k = posInt(numFlag(args, '--k', 64), '--k');
    const filter = flag(args, '--filter');
    const [p] = positionals(args, 1, 'FILE|DIR');
    if (json && jsonl) throw new UsageError('--json and --jsonl exclude each other');
    return withEngine(async (engine) => {
      const res = await esdRows(p, { engine }, { full, k, filter }, jsonl ? (r) => jsonLine(r) : undefined);
      if (jsonl) return 0;
      if (json) {
        process.stdout.write(toJson(res) + '\n');
        return 0;
      }
      const cols = ['alpha', 'alpha_weighted', 'log_norm', 'log_spectral_norm', 'stable_rank', 'entropy', 'mp_softrank'] as const;
      const lines = [`${res.path}: ${res.rows.length} 2-D tensors${res.skipped.length ? `, ${res.skipped.length} others skipped` : ''}${full ? ', full spectra' : `, exact spectra up to 1024 on the smaller side, top-${k} above (--full: all exact)`}`,
        `${'name'.padEnd(52)} ${'N×M'.padStart(11)} ${cols.map((c) => c.padStart(Math.max(9, c.length))).join(' ')}  warning`];
      for (const r of res.rows) {
        lines.push(`${r.name.padEnd(52)} ${`${r.N}×${r.M}`.padStart(11)} ${cols.map((c) => g4(r[c]).padStart(Math.max(9, c.length))).join(' ')}  ${r.warning}`);
      }
      for (const sk of res.skipped.filter((x) => !/-D$|side < 2/.test(x.reason))) lines.push(`skipped ${sk.name}: ${sk.reason}`);
      process.stdout.write(lines.join('\n') + '\n');
      return 0;
    });
  },
};
