/** Worker jobs `peers.mergePreview` / `peers.mergeWrite`: N-adapter TIES / DARE / magnitude merges (src/core/surgery/ties.ts). */
import type { Adapter } from '../../core/formats/adapter';
import { openAdapter } from '../../core/formats/open';
import { mergeAdapters, previewMerge, type MergeOptions } from '../../core/surgery/ties';
import { MergePreview, MergeWrite } from '../../shared/jobs';
import type { MergeJobParams, MergePreviewResult, MergeWriteParams, MergeWriteResult } from '../../shared/merge';
import { handle, type JobContext, type JobHandler } from './registry';

async function withAdapters<T>(p: MergeJobParams, fn: (inputs: { adapter: Adapter; weight: number }[]) => Promise<T>): Promise<T> {
  if (p.paths.length < 2) throw new Error('a merge needs at least two adapters');
  if (p.weights.length !== p.paths.length) throw new Error(`${p.paths.length} adapters but ${p.weights.length} weights`);
  const adapters: Adapter[] = [];
  try {
    for (const path of p.paths) adapters.push(openAdapter(path));
    return await fn(adapters.map((adapter, i) => ({ adapter, weight: p.weights[i] })));
  } finally {
    for (const a of adapters) a.store.close();
  }
}

function options(p: MergeJobParams, ctx: JobContext): MergeOptions {
  return { method: p.method, density: p.density, seed: p.seed, force: p.force, token: ctx.token, onProgress: (d, t, m) => ctx.progress(d, t, m) };
}

export async function mergePreviewJob(p: MergeJobParams, ctx: JobContext): Promise<MergePreviewResult> {
  const t0 = performance.now();
  return withAdapters(p, async (inputs) => ({ ...(await previewMerge(ctx.engine, inputs, options(p, ctx))), ms: performance.now() - t0 }));
}

export async function mergeWriteJob(p: MergeWriteParams, ctx: JobContext): Promise<MergeWriteResult> {
  const t0 = performance.now();
  return withAdapters(p, async (inputs) => {
    const { preview: _preview, config: _config, ...r } = await mergeAdapters(ctx.engine, inputs, p.outDir, options(p, ctx));
    return { ...r, ms: performance.now() - t0 };
  });
}

export const mergeHandlers: JobHandler[] = [handle(MergePreview, mergePreviewJob), handle(MergeWrite, mergeWriteJob)];
