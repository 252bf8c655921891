/** Adapter doctor in the editor (issue 11.1): job params/result and the panel's view (plain data mirroring src/core/doctor). */
export type DoctorSeverity = 'error' | 'warning' | 'info';

export interface DoctorFindingView {
  module: string;
  code: string;
  severity: DoctorSeverity;
  message: string;
  /** File the finding is attached to (adapter_config.json or the weights file). */
  file: string;
  /** 1-based line in `file`, when known. */
  line?: number;
  tensor?: string;
  suggestion?: Record<string, unknown>;
}

export interface DoctorResultView {
  adapter: { path: string; name: string; format: string; weightsFile: string; configFile?: string };
  findings: DoctorFindingView[];
  summary: { modules: number; error: number; warning: number; info: number; codes: Record<string, number> };
}

export interface DoctorParams { path: string; base?: string }
/** What every code means (src/core/doctor/codes.ts), for the panel's legend. */
export interface DoctorJobResult extends DoctorResultView { codeInfo: Record<string, string>; ms: number }

export interface DoctorView { kind: 'doctor'; result: DoctorJobResult; running?: boolean; updated: string }
