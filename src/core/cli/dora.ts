/**
 * `lora-lens dora ADAPTER --base DIR|FILE [--module NAME] [--k 8] [--force] [--json]`: DoRA modules
 * analysed against their base weight (src/core/analysis/lycoris.ts analyzeDora): the learned magnitude
 * vector against the base's row norms (before) and the merged direction's norms, the per-row direction
 * change, and the TRUE ΔW = m ⊙ (W₀ + s·B·A)/‖W₀ + s·B·A‖ − W₀ (‖·‖_F, leading σ) next to the s·B·A
 * a LoRA-only view reports.
 */
import { analyzeDora, type DoraModuleReport } from '../analysis/lycoris';
import { openBase } from '../base/analyses';
import { checkAdapterBase } from '../base/match';
import { FormatError } from '../formats/errors';
import { openAdapter } from '../formats/open';
import { bool, CliCommand, flag, numFlag, toJson, UsageError } from './args';
import { g4, posInt, positionals, withEngine } from './common';

const USAGE = 'lora-lens dora ADAPTER --base DIR|FILE [--module NAME] [--k 8] [--force] [--json]   DoRA magnitude vs base row norms, direction change, true ΔW';

async function run(argv: string[]): Promise<number> {
  const args = [...argv];
  const json = bool(args, '--json');
  const force = bool(args, '--force');
  const basePath = flag(args, '--base');
  const only = flag(args, '--module');
  const k = posInt(numFlag(args, '--k', 8), '--k');
  if (!basePath) throw new UsageError('needs --base DIR|FILE (the base model the DoRA adapter was trained on)');
  const [adapterPath] = positionals(args, 1, 'ADAPTER');
  const adapter = openAdapter(adapterPath);
  try {
    const dora = adapter.modules.filter((m) => m.magnitude && (!only || m.name === only));
    if (only && dora.length === 0) throw new FormatError(adapter.path, `has no DoRA module named "${only}"`);
    if (dora.length === 0) throw new FormatError(adapter.path, 'has no DoRA modules (no lora_magnitude_vector tensors): nothing to analyse');
    const base = openBase(basePath);
    try {
      const match = checkAdapterBase(adapter, base, { force, modules: dora });
      const modules: DoraModuleReport[] = await withEngine(async (engine) => {
        const out: DoraModuleReport[] = [];
        for (const { module } of match.matched) out.push(await analyzeDora(engine, adapter, module, base, k));
        return out;
      });
      const result = { adapter: adapter.path, base: basePath, modules, warnings: match.warnings };
      if (json) console.log(toJson(result));
      else {
        console.log(`${adapter.name}: ${modules.length} DoRA modules against ${basePath}`);
        console.log('module'.padEnd(48), 'm/‖W0‖ min..max'.padStart(18), 'max angle°'.padStart(11), '‖ΔW true‖F'.padStart(11), '‖s·B·A‖F'.padStart(10), 'rel diff'.padStart(9));
        for (const m of modules) {
          const r = m.summary.magnitudeRatio;
          console.log(m.name.padEnd(48), `${g4(r.min)}..${g4(r.max)}`.padStart(18), g4(m.summary.maxAngleDeg).padStart(11), g4(m.trueDelta.fro).padStart(11), g4(m.trueDelta.loraFro).padStart(10), g4(m.trueDelta.relDiffFromLora).padStart(9));
        }
        for (const w of match.warnings) console.log(`warning: ${w}`);
      }
      return 0;
    } finally {
      base.store.close();
    }
  } finally {
    adapter.store.close();
  }
}

export const doraCommand: CliCommand = { name: 'dora', usage: USAGE, run };
