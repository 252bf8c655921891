/** Worker job `analyze`: the adapter analysis (issue 2) → AdapterReport. */
import { analyzeAdapter, releaseAnalysisScratch } from '../../core/analysis/lora';
import { openAdapter } from '../../core/formats/open';
import { Analyze, type AnalyzeParams } from '../../shared/jobs';
import type { AdapterReport } from '../../shared/report';
import { handle, type JobContext, type JobHandler } from './registry';

export async function analyzeJob(p: AnalyzeParams, ctx: JobContext): Promise<AdapterReport> {
  let adapter;
  try {
    adapter = openAdapter(p.path);
    return await analyzeAdapter(adapter, {
      engine: ctx.engine, method: p.method, token: ctx.token,
      onProgress: (done, total, message) => ctx.progress(done, total, message),
    });
  } finally {
    adapter?.store.close();
    releaseAnalysisScratch();
  }
}

export const analyzeHandlers: JobHandler[] = [handle(Analyze, analyzeJob)];
