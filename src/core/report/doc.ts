/**
 * Report documents: one plain-data model (sections of facts, tables, charts, findings, code) that
 * is rendered to Markdown or to one self-contained HTML file (render.ts), and that a webview panel
 * can render directly. Builders for the adapter report (with its model-card section), the doctor
 * and the similarity results are in build.ts.
 */
export type Cell = string | number | null | undefined;

export interface BarSeries {
  kind: 'bars';
  /** One label per bar (tooltips in HTML). */
  labels: string[];
  values: number[];
  yLabel: string;
  /** Logarithmic y axis (values ≤ 0 are drawn at the bottom). */
  log?: boolean;
  /** Optional reference value per bar drawn as a tick (e.g. the rank r next to the effective rank). */
  marks?: number[];
}

export interface LineSeries {
  kind: 'lines';
  /** Each line: y values at x = 1..n; name shown as tooltip. */
  lines: { name: string; y: number[] }[];
  xLabel: string;
  yLabel: string;
  log?: boolean;
}

export interface Heatmap {
  kind: 'heatmap';
  labels: string[];
  /** Values in [0, 1] (null = no value). */
  values: (number | null)[][];
  legend: string;
}

export type Chart = BarSeries | LineSeries | Heatmap;

export type Block =
  | { kind: 'text'; text: string }
  | { kind: 'facts'; rows: [string, Cell][] }
  | { kind: 'table'; columns: string[]; rows: Cell[][]; numeric?: boolean[]; note?: string }
  | { kind: 'chart'; title: string; chart: Chart; caption?: string }
  | { kind: 'findings'; findings: { severity: string; code: string; module: string; message: string }[] }
  | { kind: 'code'; language: string; text: string };

export interface Section {
  id: string;
  title: string;
  blocks: Block[];
}

export interface ReportDoc {
  title: string;
  subtitle?: string;
  generated: string;
  sections: Section[];
}
