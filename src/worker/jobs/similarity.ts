/** Worker job `peers.similarity`: split-invariant similarity of N adapters (src/core/similarity). */
import type { Adapter } from '../../core/formats/adapter';
import { openAdapter } from '../../core/formats/open';
import { adapterSimilarity } from '../../core/similarity/similarity';
import { Similarity } from '../../shared/jobs';
import type { SimilarityParams, SimilarityResultView } from '../../shared/similarity';
import { handle, type JobContext, type JobHandler } from './registry';

export async function similarityJob(p: SimilarityParams, ctx: JobContext): Promise<SimilarityResultView> {
  if (p.paths.length < 2) throw new Error('similarity needs at least two adapters');
  const adapters: Adapter[] = [];
  try {
    for (const path of p.paths) adapters.push(openAdapter(path));
    return await adapterSimilarity(adapters, { engine: ctx.engine, token: ctx.token, onProgress: (d, t) => ctx.progress(d, t, 'comparing modules') });
  } finally {
    for (const a of adapters) a.store.close();
  }
}

export const similarityHandlers: JobHandler[] = [handle(Similarity, similarityJob)];
