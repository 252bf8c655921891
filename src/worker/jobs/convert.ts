/** Worker job `convert.adapter`: {path, target, out, architecture?, heads?, kvHeads?, base?} → ConvertResult. */
import { convertAdapter } from '../../core/convert/convert';
import { openAdapter } from '../../core/formats/open';
import type { ConvertJobParams, ConvertResult } from '../../shared/convert';
import { Convert } from '../../shared/jobs';
import { handle, type JobContext, type JobHandler } from './registry';

export async function convertJob(p: ConvertJobParams, ctx: JobContext): Promise<ConvertResult> {
  const a = openAdapter(p.path);
  try {
    return await convertAdapter(a, p.target, p.out, {
      architecture: p.architecture, heads: p.heads, kvHeads: p.kvHeads, base: p.base, token: ctx.token, engine: ctx.engine,
      onProgress: (d, t, m) => ctx.progress(d, t, m),
    });
  } finally {
    a.store.close();
  }
}

export const convertHandlers: JobHandler[] = [handle(Convert, convertJob)];
