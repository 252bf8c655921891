/**
 * In-training BaLoRA projection (papers.md §1.2, PEFT convention A [r, in], B [out, r]) and the
 * monitored quantities (balance gap ‖BᵀB − AAᵀ‖_F, condition numbers of A and B). fp64, r×r work
 * plus two thin SVDs; the product B·A is never formed. Kept local to src/core/train so training
 * does not depend on src/core/surgery (the saved-adapter tool).
 */
import { svd } from '../linalg/decomp';
import { Mat, mat, matmul, transpose, scaleCols, scaleRows, frobenius, sub } from '../linalg/dense';

/** Projects (A, B) onto {BᵀB = AAᵀ} keeping B·A. Returns zeros when B·A = 0. */
export function balanceProject(A: Mat, B: Mat): { A: Mat; B: Mat } {
  const r = A.rows;
  const sa = svd(A); // A = UA·diag(DA)·VAᵀ : UA r×r, VA in×r
  const UA = sa.U, VAh = transpose(sa.V);
  const SA = matmul(scaleCols(UA, sa.S), transpose(UA));
  const RA = matmul(UA, VAh);
  const sb = svd(B); // B = UB·diag(DB)·VBᵀ : UB out×r, VB r×r
  const VBh = transpose(sb.V);
  const SB = matmul(scaleCols(sb.V, sb.S), VBh);
  const RB = matmul(sb.U, VBh);
  const S = matmul(SB, SA);
  const s = svd(S);
  const root = Float64Array.from(s.S, (x) => Math.sqrt(Math.max(x, 0)));
  const An = matmul(scaleRows(transpose(s.V), root), RA);
  const Bn = matmul(RB, scaleCols(s.U, root));
  if (An.rows !== r) throw new Error('balanceProject: shape');
  return { A: An, B: Bn };
}

export function balanceGap(A: Mat, B: Mat): number {
  return frobenius(sub(matmul(transpose(B), B), matmul(A, transpose(A))));
}

export function kappa(M: Mat): number {
  const S = svd(M, { wantU: false, wantV: false }).S;
  const lo = S[S.length - 1];
  return lo > 0 ? S[0] / lo : Infinity;
}

export function toMat(rows: number, cols: number, data: ArrayLike<number>): Mat {
  return mat(rows, cols, data);
}
