/**
 * `lora-lens compare CKPT1 CKPT2 [--tensor NAME] [--json]`
 *
 * Per-tensor relative change ‖W2 − W1‖_F / ‖W1‖_F of two checkpoints (files, indexes, model or
 * adapter folders); with --tensor, σ of W1, W2 and W2 − W1 and the intruders of W2 against W1.
 * Unrelated checkpoints (no tensor of the same name and shape) are refused.
 */
import { compareCheckpoints, compareTensor } from '../base/analyses';
import { bool, type CliCommand, flag, toJson } from './args';
import { g4, positionals, withEngine } from './common';

export const compareCommand: CliCommand = {
  name: 'compare',
  usage: 'lora-lens compare CKPT1 CKPT2 [--tensor NAME] [--json]\n      per-tensor relative change of two checkpoints (--tensor: its spectra and intruders)',
  async run(argv) {
    const args = [...argv];
    const json = bool(args, '--json');
    const tensor = flag(args, '--tensor');
    const [a, b] = positionals(args, 2, 'CKPT1 CKPT2');
    return withEngine(async (engine) => {
      const res = await compareCheckpoints({ a, b }, { engine });
      const detail = tensor !== undefined ? await compareTensor({ a, b, tensor }, { engine }) : undefined;
      const summary = { compared: res.rows.length, skipped: res.skipped.length, maxRelChange: res.rows.reduce((m, r) => Math.max(m, r.relChange), 0) };
      if (json) {
        process.stdout.write(toJson({ ...res, summary, ...(detail ? { tensor: detail } : {}) }) + '\n');
        return 0;
      }
      const lines = [`${res.a} → ${res.b}: ${summary.compared} tensors compared, ${summary.skipped} skipped, max relative change ${g4(summary.maxRelChange)}`,
        `${'tensor'.padEnd(56)} ${'shape'.padStart(14)} ${'‖W1‖F'.padStart(10)} ${'‖ΔW‖F'.padStart(10)} ${'rel'.padStart(10)}`];
      for (const r of [...res.rows].sort((x, y) => y.relChange - x.relChange)) {
        lines.push(`${r.name.padEnd(56)} ${r.shape.join('×').padStart(14)} ${g4(r.normBase).padStart(10)} ${g4(r.normDiff).padStart(10)} ${g4(r.relChange).padStart(10)}`);
      }
      for (const s of res.skipped.slice(0, 10)) lines.push(`skipped ${s.name}: ${s.reason}`);
      if (res.skipped.length > 10) lines.push(`… ${res.skipped.length - 10} more skipped`);
      if (detail) {
        lines.push(`${detail.tensor} (${detail.m}×${detail.n}): σ(ΔW) ${detail.sigma.delta.slice(0, 5).map(g4).join(' ')}; intruders of W2 vs W1: ${detail.intruders.count} (+${detail.intruders.possible} possible, ${detail.intruders.mode})`);
      }
      for (const w of res.warnings) lines.push(`warning: ${w}`);
      process.stdout.write(lines.join('\n') + '\n');
      return 0;
    });
  },
};
