/** Worker job `peers.extract`: a LoRA from (base, fine-tuned) model folders (src/core/extract). */
import { extractLora } from '../../core/extract/extract';
import type { ExtractJobResult, ExtractParams } from '../../shared/extract';
import { Extract } from '../../shared/jobs';
import { handle, type JobContext, type JobHandler } from './registry';

export async function extractJob(p: ExtractParams, ctx: JobContext): Promise<ExtractJobResult> {
  const t0 = performance.now();
  const { config: _config, ...r } = await extractLora(ctx.engine, p.base, p.tuned, p.outDir, { rule: p.rule, token: ctx.token, onProgress: (d, t, m) => ctx.progress(d, t, m) });
  return { ...r, ms: performance.now() - t0 };
}

export const extractHandlers: JobHandler[] = [handle(Extract, extractJob)];
