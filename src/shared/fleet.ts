/** Fleets (issue 11.3): "Analyze Folder" job params, streamed records and the panel's view (the records src/core/fleet streams, defined here once). */
export interface FleetRecord {
  path: string;
  ok: true;
  name: string;
  format: string;
  /** base_model_name_or_path (or the format's equivalent), null when not recorded. */
  base: string | null;
  /** Config rank (or the first module's). */
  r: number | null;
  /** Distinct module ranks, ascending. */
  ranks: number[];
  alpha: number | null;
  scale: number | null;
  scaleMin: number | null;
  scaleMax: number | null;
  /** How the scale was derived (the most common module's rule). */
  scaleRule: string;
  rslora: boolean;
  dora: boolean;
  modules: number;
  /** LoRA parameters. */
  params: number;
  /** Bytes of the weights file. */
  bytes: number;
  dtype: string;
  sigma1: number | null;
  effectiveRank: number | null;
  stableRank: number | null;
  gap: number | null;
  /** Doctor: total findings and per severity. */
  findings: number;
  errors: number;
  warnings: number;
  infos: number;
  codes: Record<string, number>;
  /** Modules that could not be analysed (NaN/Inf). */
  moduleErrors: number;
  ms: number;
}

export interface FleetError {
  path: string;
  ok: false;
  error: string;
}

export type FleetEntry = FleetRecord | FleetError;
export type FleetRecordView = FleetRecord;
export type FleetErrorView = FleetError;
export type FleetEntryView = FleetEntry;

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
