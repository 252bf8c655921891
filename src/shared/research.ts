/**
 * Typed protocol between the extension host and the research webview (`loraLens.research`), plus the plain-data
 * shapes of the research worker jobs (src/worker/jobs/research.ts). Handshake: the webview posts `ready`, the host
 * answers `init` (view + inputs), then `result` whenever a job finishes; `recompute` asks for a new run.
 */
import { parseWebviewMessage, type Envelope } from './envelope';
export type ResearchView = 'lipschitz' | 'dynamics' | 'vlora';

export interface LipschitzParams { base: string; adapter?: string; n?: number; R?: number; layer?: number; head?: number; ns?: number[] }
export interface HeadRow { layer: number; head: number; kvHead: number; normV: number; normA: number; bound: number; adapted?: { normV: number; normA: number; bound: number } }
export interface ScalingPoint { n: number; lipschitz: number; codeBound: number; radiusBound: number }
export interface ScalingRun { points: ScalingPoint[]; slope: number }
export interface LipschitzResult {
  table: { n: number; R: number; radiusNote: string; rows: HeadRow[]; layers: { layer: number; bound: number; adaptedBound?: number }[]; adaptedModules: string[] };
  scaling: { layer: number; head: number; R: number; base: ScalingRun; adapted?: ScalingRun };
  layout: { layers: number; heads: number; kvHeads: number; headDim: number; hidden: number };
}

export interface DynamicsParams { base: string; adapter?: string; layer?: number; head?: number; n?: number; seed?: number; steps?: number; dt?: number }
export interface GaussianFrame { t: number; mean: number[]; /** 2×2 covariance [xx, xy, yy] in the projection plane. */ cov: number[] }
export interface DynamicsRun { frames: number[][][]; gaussian: GaussianFrame[] }
export interface DynamicsResult {
  layer: number; head: number; n: number; seed: number; dt: number; steps: number; times: number[];
  base: DynamicsRun; lora: DynamicsRun; deviation: number[]; adapted: string[];
  layout: { layers: number; heads: number };
}

export interface KoubbiResult {
  clusters: number[][];
  rows: { eps: number; timeCluster: number; timeBifurcation: number }[];
  divergence: { eps: number; time: number | null; maxDeviation: number }[];
  reference: { clusters: number[][]; bifurcation: { eps: number; timeCluster: number; timeBifurcation: number }[]; divergence: { eps: number; time: number }[] };
}

export interface VloraParams { base: string; adapter?: string; rank?: number; compoundSize?: number }
export interface IncrementRow { from: number; to: number; sigma: number[]; fro: number; relative: number; rank90: { rank: number; lowerBound: boolean }; rank99: { rank: number; lowerBound: boolean }; tailAtRank: number }
export interface VloraResult {
  report: { rank: number; compoundSize: number; fullParams: number; vloraParams: number; saving: number; kinds: { kind: string; rows: number; cols: number; layers: number[]; consecutive: IncrementRow[]; fullParams: number; vloraParams: number; saving: number }[] };
  /** VLoRA's budget on the chosen base for every equal cut of its layers into compounds (stacked 2-D weights only). */
  savings: { full: number; layers: number; rows: { compounds: number; size: number; rank: number; params: number; saving: number }[] };
  /** The chosen adapter's own LoRA parameter count, for comparison. */
  adapter?: { path: string; modules: number; params: number; ranks: number[] };
}

export type ResearchResult =
  | { view: 'lipschitz'; data: LipschitzResult }
  | { view: 'dynamics'; data: DynamicsResult; koubbi: KoubbiResult }
  | { view: 'vlora'; data: VloraResult };

export interface ResearchInputs { n?: number; R?: number; layer?: number; head?: number; seed?: number; tokens?: number; rank?: number }

export type WebviewToHost =
  | Envelope
  | { type: 'recompute'; inputs: ResearchInputs };

export type HostToWebview =
  | { type: 'init'; view: ResearchView; base: string; adapter?: string }
  | { type: 'busy'; message: string }
  | { type: 'result'; result: ResearchResult }
  | { type: 'error'; message: string };

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** Validates an incoming message on the host; undefined for anything malformed. */
export function parseWebviewToHost(m: unknown): WebviewToHost | undefined {
  return parseWebviewMessage(m, ({ type, o }): WebviewToHost | undefined => {
    if (type !== 'recompute' || !o.inputs || typeof o.inputs !== 'object') return undefined;
    const i = o.inputs as Record<string, unknown>;
    const inputs: ResearchInputs = {};
    for (const k of ['n', 'R', 'layer', 'head', 'seed', 'tokens', 'rank'] as const) { const v = num(i[k]); if (v !== undefined) inputs[k] = v; }
    return { type: 'recompute', inputs };
  });
}
