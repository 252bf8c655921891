/**
 * Worker job `analysis.dora` (issue 11.6): the DoRA modules of an adapter against their base, one
 * module at a time (core/analysis/lycoris.ts analyzeDora, the same path as `lora-lens dora`), each
 * result streamed as progress data; σ of s·B·A from the factor QR (core/analysis/lora.ts).
 */
import { analyzeAdapter, releaseAnalysisScratch } from '../../core/analysis/lora';
import { analyzeDora } from '../../core/analysis/lycoris';
import { openBase } from '../../core/base/analyses';
import { checkAdapterBase } from '../../core/base/match';
import { FormatError } from '../../core/formats/errors';
import { openAdapter } from '../../core/formats/open';
import { throwIfCancelled } from '../../core/util/cancel';
import type { DoraModuleView, DoraParams, DoraProgressData, DoraResult } from '../../shared/dora';
import { Dora } from '../../shared/jobs';
import { handle, type JobContext, type JobHandler } from './registry';

const NO_DORA = 'has no DoRA modules (no lora_magnitude_vector tensors): nothing to analyse';

async function doraJob(p: DoraParams, ctx: JobContext<DoraProgressData>): Promise<DoraResult> {
  const adapter = openAdapter(p.adapterPath);
  try {
    const dora = adapter.modules.filter((m) => m.magnitude);
    if (dora.length === 0) throw new FormatError(adapter.path, NO_DORA);
    const base = openBase(p.basePath);
    try {
      const match = checkAdapterBase(adapter, base, { force: p.force, modules: dora });
      const names = new Set(match.matched.map((x) => x.module.name));
      ctx.progress(0, names.size, 'σ of s·B·A');
      const lora = await analyzeAdapter(adapter, { engine: ctx.engine, token: ctx.token, filter: (m) => names.has(m.name) });
      const loraByName = new Map(lora.modules.map((m) => [m.name, m]));
      const modules: DoraModuleView[] = [];
      for (const { module } of match.matched) {
        throwIfCancelled(ctx.token);
        const r = await analyzeDora(ctx.engine, adapter, module, base, p.k ?? 8);
        const l = loraByName.get(module.name);
        const view: DoraModuleView = {
          ...r, rank: module.rank, scale: module.scale, outFeatures: r.normBefore.length, inFeatures: l?.inFeatures ?? NaN, loraSigma: l?.sigma ?? [],
        };
        modules.push(view);
        ctx.progress(modules.length, match.matched.length, module.name, { module: view });
      }
      return { adapter: adapter.path, base: p.basePath, modules, warnings: match.warnings };
    } finally {
      base.store.close();
    }
  } finally {
    adapter.store.close();
    releaseAnalysisScratch();
  }
}

export const doraHandlers: JobHandler[] = [handle(Dora, doraJob)];
