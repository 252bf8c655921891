/**
 * The "layer" axis of Stable Diffusion LoRAs. Transformer LLM adapters have `layers.N`; SD adapters
 * (diffusers, kohya, SDXL/LDM) name UNet blocks (`down_blocks.1.attentions.0…`, kohya
 * `lora_unet_down_blocks_1_attentions_0_…`, SDXL `input_blocks_4_1_…`) and text-encoder layers
 * (`text_encoder.text_model.encoder.layers.3…`, kohya `lora_te1_text_model_encoder_layers_3_…`). Their
 * generic layer parse (`\.(\d+)\.`) puts every module at "layer 0", so here each module gets its
 * block as the layer: text encoder layers first, then UNet down → mid → up in network order, with a
 * readable label (`te.3`, `down.1.attn0`, `mid.attn0`, `up.2.attn1`, SDXL `in.4.1`) and its module
 * type within the block (`attn1.to_k`, `ff.net.0.proj`) as the kind that legends group by.
 */

/** A module's place in an SD network: sortable key, label, and its type within the block. */
export interface SdBlock {
  /** Sort key in network order (text encoders, then UNet input → middle → output). */
  key: number;
  label: string;
  /** Module path inside the block, transformer-block index removed (`attn1.to_k`). */
  type: string;
}

const S = '[._]';
const TE = new RegExp(`^(?:.*${S})?(?:lora${S})?(text${S}?encoder(?:${S}?(\\d))?|te(\\d)?)${S}(?:.*${S})?layers${S}(\\d+)${S}(.+)$`);
const DIFFUSERS_UNET = new RegExp(`(?:^|${S})(down|up)${S}blocks${S}(\\d+)${S}(attentions|resnets|downsamplers|upsamplers)${S}(\\d+)(?:${S}(.+))?$`);
const DIFFUSERS_MID = new RegExp(`(?:^|${S})mid${S}block${S}(attentions|resnets)${S}(\\d+)(?:${S}(.+))?$`);
const LDM_UNET = new RegExp(`(?:^|${S})(input|output)${S}blocks${S}(\\d+)${S}(\\d+)(?:${S}(.+))?$`);
const LDM_MID = new RegExp(`(?:^|${S})middle${S}block${S}(\\d+)(?:${S}(.+))?$`);
const TRANSFORMER_BLOCK = new RegExp(`^transformer${S}blocks${S}(\\d+)${S}`);

const SUB: Record<string, [number, string]> = { resnets: [0, 'res'], attentions: [1, 'attn'], downsamplers: [2, 'down'], upsamplers: [2, 'up'] };

/** Splits off `transformer_blocks.N.` (SDXL has up to 10 per attention): type and block index. */
function inner(rest: string | undefined): { type: string; t: number } {
  if (!rest) return { type: 'block', t: 0 };
  const m = TRANSFORMER_BLOCK.exec(rest);
  return m ? { type: rest.slice(m[0].length), t: Number(m[1]) } : { type: rest, t: 0 };
}

const tSuffix = (t: number): string => (t > 0 ? `.t${t}` : '');

/** The SD block of a module name, or undefined for names that are not SD UNet / text-encoder modules. */
export function sdBlockOf(name: string): SdBlock | undefined {
  const te = TE.exec(name);
  if (te) {
    const which = Number(te[2] ?? te[3] ?? 1) || 1;
    const layer = Number(te[4]);
    return { key: which * 1e6 + layer, label: which > 1 ? `te${which}.${layer}` : `te.${layer}`, type: te[5] };
  }
  let m = DIFFUSERS_UNET.exec(name);
  if (m) {
    const stage = m[1] === 'down' ? 1 : 3;
    const b = Number(m[2]);
    const [subRank, subLabel] = SUB[m[3]];
    const i = Number(m[4]);
    const { type, t } = inner(m[5]);
    return { key: 1e8 + stage * 1e7 + b * 1e5 + subRank * 1e4 + i * 100 + t, label: `${m[1]}.${b}.${subLabel}${i}${tSuffix(t)}`, type };
  }
  m = DIFFUSERS_MID.exec(name);
  if (m) {
    const [subRank, subLabel] = SUB[m[1]];
    const i = Number(m[2]);
    const { type, t } = inner(m[3]);
    return { key: 1e8 + 2 * 1e7 + i * 1e4 + subRank * 100 + t, label: `mid.${subLabel}${i}${tSuffix(t)}`, type };
  }
  m = LDM_UNET.exec(name);
  if (m) {
    const stage = m[1] === 'input' ? 1 : 3;
    const b = Number(m[2]);
    const s = Number(m[3]);
    const { type, t } = inner(m[4]);
    return { key: 1e8 + stage * 1e7 + b * 1e5 + s * 100 + t, label: `${m[1] === 'input' ? 'in' : 'out'}.${b}.${s}${tSuffix(t)}`, type };
  }
  m = LDM_MID.exec(name);
  if (m) {
    const s = Number(m[1]);
    const { type, t } = inner(m[2]);
    return { key: 1e8 + 2 * 1e7 + s * 100 + t, label: `mid.${s}${tSuffix(t)}`, type };
  }
  return undefined;
}

/** What `assignSdLayers` writes into each module. */
export interface LayeredModule { name: string; layer?: number; kind: string; group: string; layerLabel?: string }

/**
 * When most modules of an adapter are SD UNet / text-encoder modules, rewrites their `layer` (block
 * ordinal in network order), `group` and `layerLabel` (block label) and `kind` (type within the
 * block); other adapters are left as they are. Returns true when it applied.
 */
export function assignSdLayers<M extends LayeredModule>(modules: M[]): boolean {
  const blocks = modules.map((m) => sdBlockOf(m.name));
  const hits = blocks.filter((b) => b).length;
  if (hits === 0 || hits < modules.length / 2) return false;
  const keys = [...new Set(blocks.filter((b): b is SdBlock => !!b).map((b) => b.key))].sort((a, b) => a - b);
  const ordinal = new Map(keys.map((k, i) => [k, i]));
  modules.forEach((m, i) => {
    const b = blocks[i];
    if (!b) return;
    m.layer = ordinal.get(b.key)!;
    m.group = b.label;
    m.layerLabel = b.label;
    m.kind = b.type;
  });
  return true;
}
