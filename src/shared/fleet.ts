/** Fleets (issue 11.3): "Analyze Folder" job params, streamed records and the panel's view (plain data mirroring src/core/fleet). */
export interface FleetRecordView {
  path: string;
  ok: true;
  name: string;
  format: string;
  base: string | null;
  r: number | null;
  ranks: number[];
  alpha: number | null;
  scale: number | null;
  scaleMin: number | null;
  scaleMax: number | null;
  scaleRule: string;
  rslora: boolean;
  dora: boolean;
  modules: number;
  params: number;
  bytes: number;
  dtype: string;
  sigma1: number | null;
  effectiveRank: number | null;
  stableRank: number | null;
  gap: number | null;
  findings: number;
  errors: number;
  warnings: number;
  infos: number;
  codes: Record<string, number>;
  moduleErrors: number;
  ms: number;
}
export interface FleetErrorView { path: string; ok: false; error: string }
export type FleetEntryView = FleetRecordView | FleetErrorView;

export interface FleetParams { dir: string }
/** Streamed with each progress message: the records finished since the last one. */
export interface FleetProgressData { entries: FleetEntryView[] }
export interface FleetJobResult { dir: string; count: number; failed: number; bytes: number; ms: number; cancelled?: boolean }

export interface FleetView {
  kind: 'fleet';
  dir: string;
  entries: FleetEntryView[];
  done: number;
  total: number;
  running: boolean;
  summary?: FleetJobResult;
}
