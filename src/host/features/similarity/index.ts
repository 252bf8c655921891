/** "Compare Adapters (Similarity)…" (issue 11.2): N adapters → N×N heatmap (matrix / signed / column / row space) with per-module drill-down. */
import * as vscode from 'vscode';
import { Similarity } from '../../../shared/jobs';
import type { LensContext } from '../../context';
import { registerBoundaryCommands, runJobWithProgress } from '../../ui';
import { pickAdapters } from '../report/pick';
import { PeersPanel } from '../report/peersPanel';

async function compare(ctx: LensContext, arg: unknown, more: unknown): Promise<void> {
  // Explorer multi-select passes (clicked, all selected).
  const many = Array.isArray(more) && more.length >= 2 ? more.map((u) => (u instanceof vscode.Uri ? u.fsPath : String(u))) : undefined;
  const paths = many ?? await pickAdapters(ctx, arg, 'LoRA Lens: Compare Adapters (Similarity)');
  if (!paths) return;
  const t0 = Date.now();
  const result = await runJobWithProgress(ctx.worker, Similarity, { paths }, `LoRA Lens: comparing ${paths.length} adapters`);
  PeersPanel.show(ctx, paths.join('|'), `Similarity: ${result.adapters.map((a) => a.name).join(', ')}`.slice(0, 80), { kind: 'similarity', result, ms: Date.now() - t0 }, {
    reportSource: () => ({ kind: 'similarity', result }),
  });
}

export function registerSimilarity(ctx: LensContext): void {
  registerBoundaryCommands(ctx.extension, { 'loraLens.compareSimilarity': (arg, more) => compare(ctx, arg, more) });
}
