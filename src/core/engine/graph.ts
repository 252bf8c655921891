/**
 * Minimal ONNX graph builder on top of onnx-proto (in-memory models, no files).
 *
 *   const g = new GraphBuilder('gram');
 *   const x = g.input('x', 'float32', ['L', 'm', 'r']);
 *   const y = g.op('MatMul', [g.op('Transpose', [xd], { perm: [0, 2, 1] }), xd]);
 *   g.output(y, 'float64');
 *   const bytes = g.build();
 */
import { onnx } from 'onnx-proto';

export type ElemType = 'float32' | 'float64' | 'float16' | 'int64' | 'int32' | 'bool';

const ELEM: Record<ElemType, onnx.TensorProto.DataType> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float64: onnx.TensorProto.DataType.DOUBLE,
  float16: onnx.TensorProto.DataType.FLOAT16,
  int64: onnx.TensorProto.DataType.INT64,
  int32: onnx.TensorProto.DataType.INT32,
  bool: onnx.TensorProto.DataType.BOOL,
};

export function onnxElemType(t: ElemType): number {
  return ELEM[t];
}

export type AttrValue = number | number[] | string | Float32Array | onnx.IGraphProto | { floats: number[] };

function attribute(name: string, v: AttrValue): onnx.IAttributeProto {
  const A = onnx.AttributeProto.AttributeType;
  if (typeof v === 'number') {
    return Number.isInteger(v) ? { name, type: A.INT, i: v } : { name, type: A.FLOAT, f: v };
  }
  if (typeof v === 'string') return { name, type: A.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: A.INTS, ints: v };
  if (v instanceof Float32Array) return { name, type: A.FLOATS, floats: Array.from(v) };
  if ('floats' in v) return { name, type: A.FLOATS, floats: (v as { floats: number[] }).floats };
  return { name, type: A.GRAPH, g: v as onnx.IGraphProto };
}

function valueInfo(name: string, t: ElemType, shape?: (number | string)[]): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEM[t],
        shape: shape ? { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } : undefined,
      },
    },
  };
}

export class GraphBuilder {
  private readonly nodes: onnx.INodeProto[] = [];
  private readonly inputs: onnx.IValueInfoProto[] = [];
  private readonly outputs: onnx.IValueInfoProto[] = [];
  private readonly initializers: onnx.ITensorProto[] = [];
  private counter = 0;

  constructor(public readonly name: string, public readonly opset = 17) {}

  fresh(prefix = 't'): string {
    return `${prefix}_${this.counter++}`;
  }

  input(name: string, t: ElemType, shape?: (number | string)[]): string {
    this.inputs.push(valueInfo(name, t, shape));
    return name;
  }

  output(name: string, t: ElemType, shape?: (number | string)[]): string {
    this.outputs.push(valueInfo(name, t, shape));
    return name;
  }

  /** Adds a constant tensor (initializer). */
  constant(values: ArrayLike<number>, t: ElemType, dims: number[], name = this.fresh('c')): string {
    const tp: onnx.ITensorProto = { name, dataType: ELEM[t], dims };
    if (t === 'float32') tp.floatData = Array.from(values);
    else if (t === 'float64') tp.doubleData = Array.from(values);
    else if (t === 'int64') tp.int64Data = Array.from(values);
    else if (t === 'int32' || t === 'bool') tp.int32Data = Array.from(values);
    else throw new Error(`constant of type ${t} not supported`);
    this.initializers.push(tp);
    return name;
  }

  /** Adds a node with one output (or `nOut` outputs); returns the first output name. */
  op(type: string, inputs: string[], attrs: Record<string, AttrValue> = {}, out?: string | string[]): string {
    const outs = Array.isArray(out) ? out : [out ?? this.fresh(type.toLowerCase())];
    this.nodes.push({
      opType: type,
      input: inputs,
      output: outs,
      name: this.fresh(`n_${type}`),
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outs[0];
  }

  /** Serialised ModelProto. */
  build(): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: 'lora-lens',
      opsetImport: [{ domain: '', version: this.opset }],
      graph: {
        name: this.name,
        node: this.nodes,
        input: this.inputs,
        output: this.outputs,
        initializer: this.initializers,
      },
    });
    const err = onnx.ModelProto.verify(model);
    if (err) throw new Error(`invalid ONNX model ${this.name}: ${err}`);
    return onnx.ModelProto.encode(model).finish();
  }
}
