/** Worker job `convert.adapter`: {path, target, out, architecture?, heads?, kvHeads?, base?} → ConvertResult. */
import '../../core/formats/register';
import { convertAdapter, ConvertTarget } from '../../core/convert/convert';
import { openAdapter } from '../../core/formats/open';
import { registerJob } from './registry';

export interface ConvertJobParams { path: string; target: ConvertTarget; out: string; architecture?: string; heads?: number; kvHeads?: number; base?: string }

registerJob('convert.adapter', async (params, ctx) => {
  const p = params as ConvertJobParams;
  const a = openAdapter(p.path);
  try {
    return await convertAdapter(a, p.target, p.out, {
      architecture: p.architecture, heads: p.heads, kvHeads: p.kvHeads, base: p.base, token: ctx.token,
      onProgress: (d, t, m) => ctx.progress(d, t, m),
    });
  } finally {
    a.store.close();
  }
});
