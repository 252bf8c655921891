/** Shared by every writing command's result (core surgery/convert, worker jobs, panels). */
/**
 * What a writing command checked after writing (every writing command's result has one): the
 * output was reopened and compared with an fp64 reference; maxAbsError is the largest absolute
 * element error of the quantity named in `what`.
 */
export interface Verification {
  maxAbsError: number;
  /** maxAbsError / max|reference| (0 when the reference is 0). */
  maxRelError: number;
  /** The relative tolerance the check enforced (the output is deleted above it). */
  tolerance: number;
  /** Modules / tensors checked. */
  checked: number;
  what: string;
}
