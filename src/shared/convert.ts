/** Wire types of adapter conversion (core/convert, the `convert.adapter` job, the CLI and the host command). */
import type { Verification } from './verification';

export type ConvertTarget = 'peft' | 'kohya' | 'mlx' | 'gguf';

export interface ModuleCheck {
  name: string;
  outName: string;
  rank: number;
  scale: number;
  outScale: number;
  folded: boolean;
  relErr: number;
  sigmaIn: number[];
  sigmaOut: number[];
}

export interface ConvertResult {
  target: ConvertTarget;
  input: string;
  inputFormat: string;
  out: string;
  weightsFile: string;
  modules: ModuleCheck[];
  maxRelErr: number;
  tolerance: number;
  /** Tensor dtype of the written factors (F32 / F16 / …). */
  outDtype: string;
  architecture?: string;
  warnings: string[];
  /** What was checked after writing (reopened; every module's s·B·A against the input's). */
  verification: Verification;
}

/** Parameters of the `convert.adapter` worker job. */
export interface ConvertJobParams { path: string; target: ConvertTarget; out: string; architecture?: string; heads?: number; kvHeads?: number; base?: string }
