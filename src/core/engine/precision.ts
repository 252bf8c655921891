/**
 * Does an ONNX graph compute in fp64? Used by ort.ts: at level 'all' (and 'extended') onnxruntime's
 * MatMulScaleFusion folds MatMul·Mul(constant) into FusedMatMul with an fp32 `alpha` attribute,
 * which silently rounds an fp64 scale to fp32 (relative error ~1e-8 instead of ~1e-16, issue 8).
 * fp64 sessions keep level 'all' but disable that one optimizer (session config
 * "optimization.disable_specified_optimizers"); level 'basic' would also avoid it but loses the
 * Transpose+MatMul fusion and makes the fp64 Gram graphs 3–4× slower.
 */
import { onnx } from 'onnx-proto';

const DOUBLE = onnx.TensorProto.DataType.DOUBLE;

/** Graph transformers that are unsafe for fp64 graphs (comma-separated, onnxruntime names). */
export const FP64_DISABLED_OPTIMIZERS = 'MatMulScaleFusion';

/** True when any input, output, value_info, initializer or Cast target of the model is DOUBLE. */
export function graphUsesFloat64(bytes: Uint8Array): boolean {
  const m = onnx.ModelProto.decode(bytes);
  const g = m.graph;
  if (!g) return false;
  const isD = (v: onnx.IValueInfoProto): boolean => v.type?.tensorType?.elemType === DOUBLE;
  if ((g.input ?? []).some(isD) || (g.output ?? []).some(isD) || (g.valueInfo ?? []).some(isD)) return true;
  if ((g.initializer ?? []).some((t) => t.dataType === DOUBLE)) return true;
  for (const n of g.node ?? []) {
    if (n.opType === 'Cast' && (n.attribute ?? []).some((a) => a.name === 'to' && Number(a.i) === DOUBLE)) return true;
    for (const a of n.attribute ?? []) if (a.t?.dataType === DOUBLE) return true;
  }
  return false;
}
