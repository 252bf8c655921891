/**
 * The panels of issue 11 (doctor, similarity, fleet, merge, extract) share one small protocol:
 * the host sends the panel's view (`init` / `update`), fleet rows as they stream (`append`), and
 * answers requests (open a file at a line, analyze an adapter, export the view as a report, the
 * merge panel's preview / write). Plain data only: compiled by both tsconfigs.
 */
import { parseWebviewMessage, type Envelope, type ReplyMessage } from './envelope';
import type { DoctorView } from './doctor';
import type { SimilarityView } from './similarity';
import type { FleetEntryView, FleetView } from './fleet';
import type { MergeView } from './merge';
import type { ExtractView } from './extract';

export type PeersView = DoctorView | SimilarityView | FleetView | MergeView | ExtractView;
export type ReportFormat = 'md' | 'html';

export type PeersRequest =
  | { type: 'openFile'; requestId: number; file: string; line?: number }
  | { type: 'analyze'; requestId: number; path: string }
  | { type: 'export'; requestId: number; format: ReportFormat }
  /** Doctor: run again. */
  | { type: 'rerun'; requestId: number }
  /** Merge: recompute the preview at this density. */
  | { type: 'preview'; requestId: number; density?: number }
  /** Merge: write the merged adapter (asks for the output folder). */
  | { type: 'write'; requestId: number }
  /** Fleet: stop the running analysis. */
  | { type: 'stop'; requestId: number };

export type WebviewToHost = Envelope | PeersRequest;

export type HostToWebview =
  | { type: 'init'; view: PeersView }
  | { type: 'update'; view: PeersView }
  | { type: 'append'; entries: FleetEntryView[]; done: number; total: number }
  | { type: 'progress'; message: string; done: number; total: number }
  | ReplyMessage;

const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

export function parsePeersMessage(raw: unknown): WebviewToHost | undefined {
  return parseWebviewMessage(raw, ({ type, o, requestId }): PeersRequest | undefined => {
    if (requestId === undefined) return undefined;
    switch (type) {
      case 'openFile':
        if (typeof o.file !== 'string') return undefined;
        return { type, requestId, file: o.file, line: finite(o.line) && o.line >= 1 ? Math.floor(o.line) : undefined };
      case 'analyze':
        return typeof o.path === 'string' ? { type, requestId, path: o.path } : undefined;
      case 'export':
        return o.format === 'md' || o.format === 'html' ? { type, requestId, format: o.format } : undefined;
      case 'preview':
        if (o.density !== undefined && !(finite(o.density) && o.density > 0 && o.density <= 1)) return undefined;
        return { type, requestId, density: o.density as number | undefined };
      case 'rerun': case 'write': case 'stop':
        return { type, requestId };
      default:
        return undefined;
    }
  });
}

// ---- report export (issue 11.7): what to export, as Markdown or one self-contained HTML file

export type ReportSource =
  | { kind: 'adapter'; path: string }
  | { kind: 'doctor'; result: DoctorView['result'] }
  | { kind: 'similarity'; result: SimilarityView['result'] }
  | { kind: 'fleet'; view: FleetView }
  | { kind: 'merge'; view: MergeView }
  | { kind: 'extract'; view: ExtractView };

/** `out` must not exist (written atomically: temp + link, never overwrites). */
export interface ReportParams { source: ReportSource; format: ReportFormat; out: string }
export interface ReportResult { out: string; format: ReportFormat; chars: number; title: string }
