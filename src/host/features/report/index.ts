/** Reports (issue 11.7) and the shared panel of the issue-11 views. */
import type { LensContext } from '../../context';
import { registerReport as registerExport } from './export';
import { PeersPanel } from './peersPanel';

export { PeersPanel } from './peersPanel';
export { exportReport } from './export';

export function registerReport(ctx: LensContext): void {
  registerExport(ctx);
  ctx.extension.subscriptions.push({ dispose: () => PeersPanel.disposeAll() });
}
