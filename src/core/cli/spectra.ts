/**
 * `lora-lens spectra ADAPTER --base DIR [--module NAME] [--k 64] [--full] [--force] [--json]`
 *
 * Singular values of W0 (base), W0+ΔW (merged) and ΔW (delta) for one module or every module,
 * with WeightWatcher-style ESD metrics of W0 and W0+ΔW (src/core/base/analyses.ts runSpectra).
 * --json: `{modules: [{module, sigma: {base, merged, delta}, metrics, ...}]}`; with --module the
 * one module's fields are also at the top level.
 */
import { runSpectraAll } from '../base/analyses';
import { bool, type CliCommand, flag, numFlag, toJson, UsageError } from './args';
import { g4, posInt, positionals, withEngine } from './common';

export const spectraCommand: CliCommand = {
  name: 'spectra',
  usage: 'lora-lens spectra ADAPTER --base DIR|FILE [--module NAME] [--k 64] [--full] [--force] [--json]\n      σ of W0, W0+ΔW and ΔW (top-k, or exact with --full) per module',
  async run(argv) {
    const args = [...argv];
    const json = bool(args, '--json'), full = bool(args, '--full'), force = bool(args, '--force');
    const base = flag(args, '--base');
    const module = flag(args, '--module');
    const k = posInt(numFlag(args, '--k', 64), '--k');
    const [adapter] = positionals(args, 1, 'ADAPTER');
    if (!base) throw new UsageError('--base DIR|FILE is required (the base model the adapter was trained on)');
    return withEngine(async (engine) => {
      const res = await runSpectraAll({ adapterPath: adapter, baseDir: base, module, k, full, force }, { engine });
      if (json) {
        const one = module !== undefined && res.modules.length === 1 ? res.modules[0] : {};
        process.stdout.write(toJson({ ...one, adapter, base, modules: res.modules, warnings: res.warnings }) + '\n');
        return 0;
      }
      const top = (s: number[], n = 5) => s.slice(0, n).map(g4).join(' ') + (s.length > n ? ' …' : '');
      const lines: string[] = [];
      for (const s of res.modules) {
        lines.push(`${s.module} (${s.baseTensor}, ${s.m}×${s.n}, r ${s.rank}, scale ${g4(s.scale)}, ${s.full ? 'full spectrum' : `top ${s.k}`})`);
        lines.push(`  σ(W0)      ${top(s.sigma.base)}`);
        lines.push(`  σ(W0+ΔW)   ${top(s.sigma.merged)}`);
        lines.push(`  σ(ΔW)      ${top(s.sigma.delta)}`);
        lines.push(`  stable rank W0 ${g4(s.metrics.base.stable_rank)} → ${g4(s.metrics.merged.stable_rank)}, log spectral norm ${g4(s.metrics.base.log_spectral_norm)} → ${g4(s.metrics.merged.log_spectral_norm)}`);
      }
      for (const w of res.warnings) lines.push(`warning: ${w}`);
      process.stdout.write(lines.join('\n') + '\n');
      return 0;
    });
  },
};
