/**
 * The adapter doctor's finding codes. These strings are a stable contract (CLI JSON, VS Code
 * diagnostics, docs/doctor.md): codes are never renamed or reused for another meaning.
 */
export type Severity = 'error' | 'warning' | 'info';

export const DOCTOR_CODES = {
  'untrained': { severity: 'error', what: 'Every module has B = 0 (or A = 0): ΔW = 0, the adapter does nothing (the PEFT initialisation, never trained or saved before training).' },
  'zero-b': { severity: 'warning', what: 'This module\'s B factor is all zeros: its ΔW = 0 (untrained module).' },
  'zero-a': { severity: 'warning', what: 'This module\'s A factor is all zeros: its ΔW = 0.' },
  'non-finite': { severity: 'error', what: 'NaN or ±Inf values in a factor: the adapter produces NaN outputs.' },
  'dead-module': { severity: 'warning', what: '‖ΔW‖_F of the module is far below the adapter\'s median (default < 1 % of it): the module barely changes the model.' },
  'alpha-missing': { severity: 'warning', what: 'No alpha/scale recorded; the scale comes from a default (PEFT lora_alpha 8, kohya alpha = rank, mlx scale 20, or 1).' },
  'alpha-default': { severity: 'info', what: 'lora_alpha equals PEFT\'s default 8 while r ≥ 32, so s = 8/r is small; check that alpha was set on purpose.' },
  'scale-extreme': { severity: 'warning', what: 'The effective scale s (alpha/r or alpha/√r) is outside [1/32, 8] (mlx: above 64).' },
  'rslora-alpha': { severity: 'warning', what: 'use_rslora is set with alpha ≥ r (an alpha chosen for alpha/r): s = alpha/√r is √r times larger than alpha/r.' },
  'untargeted-module': { severity: 'warning', what: 'A module has LoRA factors but is not matched by target_modules (or is excluded / outside layers_to_transform): PEFT will not load it.' },
  'target-unmatched': { severity: 'info', what: 'A target_modules entry matches no module of the adapter.' },
  'pattern-unmatched': { severity: 'warning', what: 'A rank_pattern / alpha_pattern key matches no module: the pattern has no effect (a renamed or mistyped key).' },
  'config-rank-mismatch': { severity: 'warning', what: 'The rank in adapter_config.json (r or rank_pattern) differs from the factors\' rank; the factors\' rank is used.' },
  'rank-excess': { severity: 'info', what: 'The module\'s rank is ≥ 4× the number of singular values holding 99 % of ‖ΔW‖_F² (and r ≥ 8): a rank_pattern (lora-lens reduce) would save parameters.' },
  'imbalance': { severity: 'info', what: 'Factor norms are heavily imbalanced (max(‖A‖_F/‖B‖_F, ‖B‖_F/‖A‖_F) ≥ 100): lora-lens rebalance gives the same ΔW with balanced factors.' },
  'factor-underflow': { severity: 'warning', what: 'A half-precision (BF16/F16) factor has ≥ 1 % zeros or subnormals with < 5 significant bits (F16: |x| < 9.5e-7) while not all zero: small values were flushed or lost most of their precision.' },
  'intruders': { severity: 'warning', what: 'With a base model: top singular vectors of W0 + ΔW that are intruder dimensions (max |cos| with W0\'s left singular vectors < ε).' },
  'base-mismatch': { severity: 'warning', what: 'With a base model: the module has no matching base weight (name or shape), so it cannot be applied to that base.' },
  'load-warning': { severity: 'info', what: 'A warning raised while reading the adapter (e.g. a factor without its pair).' },
} as const satisfies Record<string, { severity: Severity; what: string }>;

export type DoctorCode = keyof typeof DOCTOR_CODES;
