/**
 * Training webview (`loraLens.training`): form, Start/Stop/Resume, live chart.js line charts of
 * LoRA vs BaLoRA (loss, balance gap, κ(A)/κ(B)). Each chart container exposes `data-points` (the
 * number of points drawn), updated at most ~10×/s as batches arrive from the host.
 */
import { CategoryScale, Chart, Legend, LinearScale, LineController, LineElement, LogarithmicScale, PointElement, Tooltip } from 'chart.js';
import { h, HostChannel } from '../common/vscodeApi';
import { onThemeChange, themeColors } from '../common/theme';
import {
  CAUSAL_DEFAULTS, METRIC_DEFINITIONS, isBuiltinTask, type HostToWebview, type RunSnapshot, type RunStatus, type TrainForm, type TrainJobResult, type TrainPoint, type TrainTask, type WebviewToHost,
} from '../../src/shared/training';
import { logTick } from '../common/format';
// Opaque, ≥ 3:1 contrast versions of the theme's chart colours (Dark Modern's orange is 33 % alpha).
import { solidColor } from '../common/contrast';

Chart.register(LineController, LineElement, PointElement, LinearScale, LogarithmicScale, CategoryScale, Legend, Tooltip);

type XY = { x: number; y: number };
interface LiveChart { chart: Chart<'line', XY[]>; box: HTMLElement; series: Map<string, XY[]>; count: number }

let snap: RunSnapshot | undefined;
type ChartId = 'loss' | 'acc' | 'gap' | 'kappa';
const live: Record<ChartId, LiveChart | undefined> = { loss: undefined, acc: undefined, gap: undefined, kappa: undefined };
let pending: TrainPoint[] = [];
let raf = 0;

const channel = new HostChannel<WebviewToHost, HostToWebview>((m) => {
  switch (m.type) {
    case 'init':
      snap = m.snapshot;
      render();
      break;
    case 'points':
      if (!snap) return;
      snap.points.push(...m.points);
      pending.push(...m.points);
      if (!raf) raf = requestAnimationFrame(drainPoints);
      break;
    case 'status':
      if (!snap) return;
      snap.status = m.status;
      snap.message = m.message;
      snap.canResume = m.canResume;
      if (m.provider) snap.provider = m.provider;
      renderStatus();
      break;
    case 'finished':
      if (!snap) return;
      snap.result = m.result;
      renderResult();
      break;
    case 'reply':
      break;
  }
});
window.addEventListener('error', (e) => channel.post({ type: 'log', level: 'error', message: `${e.message} @${e.filename}:${e.lineno}` }));
const app = document.getElementById('app')!;

const fmt = (x: number | undefined): string => {
  if (x === undefined || Number.isNaN(x)) return '–';
  if (!Number.isFinite(x)) return '∞';
  const a = Math.abs(x);
  return a !== 0 && (a >= 1e4 || a < 1e-3) ? x.toExponential(2) : Number(x.toPrecision(4)).toString();
};


/**
 * The loss axis is logarithmic while the loss spans more than a factor 3 (the modular task falls
 * from ~50 to ~2), linear otherwise (a causal-LM loss of 4.5…4.9 would get no labelled log tick).
 */
function fitLossScale(lc: LiveChart): void {
  let lo = Infinity, hi = 0;
  for (const arr of lc.series.values()) for (const p of arr) { if (p.y < lo) lo = p.y; if (p.y > hi) hi = p.y; }
  const type = hi > 0 && hi / lo > 3 ? 'logarithmic' : 'linear';
  const y = lc.chart.options.scales!.y!;
  if (y.type !== type) y.type = type;
}

const SERIES: { key: string; label: string; chart: ChartId; mode: 'lora' | 'balora'; value: (p: TrainPoint) => number | undefined; color: number; dash?: number[] }[] = [
  { key: 'loss-lora', label: 'LoRA', chart: 'loss', mode: 'lora', value: (p) => p.loss, color: 0 },
  { key: 'loss-balora', label: 'BaLoRA', chart: 'loss', mode: 'balora', value: (p) => p.loss, color: 1 },
  { key: 'acc-lora', label: 'LoRA', chart: 'acc', mode: 'lora', value: (p) => p.heldOutAccuracy, color: 0 },
  { key: 'acc-balora', label: 'BaLoRA', chart: 'acc', mode: 'balora', value: (p) => p.heldOutAccuracy, color: 1 },
  { key: 'gap-lora', label: 'LoRA', chart: 'gap', mode: 'lora', value: (p) => p.balanceGap, color: 0 },
  { key: 'gap-balora', label: 'BaLoRA', chart: 'gap', mode: 'balora', value: (p) => p.balanceGap, color: 1 },
  { key: 'ka-lora', label: 'κ(A) LoRA', chart: 'kappa', mode: 'lora', value: (p) => p.kappaA, color: 0 },
  { key: 'kb-lora', label: 'κ(B) LoRA', chart: 'kappa', mode: 'lora', value: (p) => p.kappaB, color: 0, dash: [5, 3] },
  { key: 'ka-balora', label: 'κ(A) BaLoRA', chart: 'kappa', mode: 'balora', value: (p) => p.kappaA, color: 1 },
  { key: 'kb-balora', label: 'κ(B) BaLoRA', chart: 'kappa', mode: 'balora', value: (p) => p.kappaB, color: 1, dash: [5, 3] },
];

function addPoints(pts: TrainPoint[], only?: keyof typeof live): void {
  for (const s of SERIES) {
    if (only && s.chart !== only) continue;
    const lc = live[s.chart];
    if (!lc) continue;
    const arr = lc.series.get(s.key)!;
    for (const p of pts) {
      if (p.mode !== s.mode) continue;
      const v = s.value(p);
      if (v !== undefined && Number.isFinite(v) && (v > 0 || s.chart === 'acc')) { arr.push({ x: p.step, y: s.chart === 'acc' ? 100 * v : v }); lc.count++; }
    }
  }
}

function drainPoints(): void {
  raf = 0;
  const pts = pending;
  pending = [];
  addPoints(pts);
  for (const lc of Object.values(live)) {
    if (!lc) continue;
    if (lc === live.loss) fitLossScale(lc);
    lc.chart.update('none');
    lc.box.dataset.points = String(lc.count);
  }
  const last = snap?.points[snap.points.length - 1];
  const stepEl = document.getElementById('current-step');
  if (stepEl && last && snap) stepEl.textContent = `${last.step} / ${snap.form.steps}`;
  const lossL = [...(snap?.points ?? [])].reverse().find((p) => p.mode === 'lora');
  const lossB = [...(snap?.points ?? [])].reverse().find((p) => p.mode === 'balora');
  const ll = document.getElementById('loss-now');
  if (ll) ll.textContent = `LoRA ${fmt(lossL?.loss)} · BaLoRA ${fmt(lossB?.loss)}`;
  const accL = [...(snap?.points ?? [])].reverse().find((p) => p.mode === 'lora' && p.heldOutAccuracy !== undefined);
  const accB = [...(snap?.points ?? [])].reverse().find((p) => p.mode === 'balora' && p.heldOutAccuracy !== undefined);
  const an = document.getElementById('acc-now');
  if (an) {
    an.textContent = accL || accB ? `LoRA ${pct(accL?.heldOutAccuracy)} · BaLoRA ${pct(accB?.heldOutAccuracy)}` : '–';
    an.dataset.lora = String(accL?.heldOutAccuracy ?? '');
    an.dataset.balora = String(accB?.heldOutAccuracy ?? '');
  }
}

const pct = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? '–' : `${(100 * x).toFixed(1)} %`);

function makeChart(id: ChartId, title: string, hint: string, yTitle: string): HTMLElement {
  const canvas = h('canvas', { id: `${id}-canvas`, role: 'img', 'aria-label': title });
  const box = h('div', { class: 'chart-box', id: `${id}-chart`, 'data-points': 0 }, canvas);
  box.dataset.colors = SERIES.filter((s) => s.chart === id).map((s) => solidColor(themeColors().series[s.color])).join(' ');
  const card = h('div', { class: 'card chart-card', id: `${id}-card` }, h('div', { class: 'card-head' }, h('h2', {}, title), h('span', { class: 'hint' }, hint)), box);
  const c = themeColors();
  c.series = c.series.map((x) => solidColor(x));
  const series = new Map<string, XY[]>();
  const datasets = SERIES.filter((s) => s.chart === id).map((s) => {
    const data: XY[] = [];
    series.set(s.key, data);
    return { label: s.label, data, borderColor: c.series[s.color], backgroundColor: c.series[s.color], borderWidth: 1.8, pointRadius: id === 'acc' ? 2 : 0, borderDash: s.dash, tension: 0 };
  });
  requestAnimationFrame(() => {
    const chart = new Chart<'line', XY[]>(canvas, {
      type: 'line',
      data: { datasets },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false, parsing: false, normalized: true,
        interaction: { mode: 'nearest', axis: 'x', intersect: false },
        plugins: {
          legend: { position: 'bottom', labels: { color: c.fg, boxWidth: 12, boxHeight: 2, font: { size: 11 } } },
          tooltip: { callbacks: { title: (items) => `step ${items[0]?.parsed.x ?? ''}`, label: (ctx) => `${ctx.dataset.label}: ${fmt(ctx.parsed.y ?? undefined)}` } },
        },
        scales: {
          x: { type: 'linear', min: 0, suggestedMax: snap?.form.steps, title: { display: true, text: 'step', color: c.muted }, ticks: { color: c.muted, precision: 0 }, grid: { color: c.grid } },
          y: id === 'acc'
            ? { type: 'linear', min: 0, max: 100, title: { display: true, text: yTitle, color: c.muted }, ticks: { color: c.muted, stepSize: 20, callback: (v) => `${v} %` }, grid: { color: c.grid } }
            : { type: 'logarithmic', title: { display: true, text: yTitle, color: c.muted }, ticks: { color: c.muted, callback(v) { return this.type === 'logarithmic' ? logTick(Number(v)) : fmt(Number(v)); } }, grid: { color: c.grid } },
        },
      },
    });
    const lc: LiveChart = { chart, box, series, count: 0 };
    live[id] = lc;
    // Points already known (re-render, theme change, reopened panel).
    const known = snap?.points ?? [];
    addPoints(known.slice(0, known.length - pending.length), id);
    if (id === 'loss') fitLossScale(lc);
    chart.update('none');
    box.dataset.points = String(lc.count);
  });
  return card;
}

function num(id: keyof TrainForm, label: string, value: number, attrs: Record<string, string | number>, title: string): HTMLElement {
  return h('label', { class: 'field', for: `f-${id}`, title }, h('span', {}, label), h('input', { type: 'number', id: `f-${id}`, name: id, value: String(value), ...attrs }));
}

function readForm(): TrainForm {
  const v = (id: string) => Number((document.getElementById(`f-${id}`) as HTMLInputElement).value);
  const task = (document.getElementById('f-task') as HTMLSelectElement).value as TrainTask;
  const base = { r: v('r'), alpha: v('alpha'), lr: v('lr'), steps: v('steps'), seed: v('seed') };
  if (isBuiltinTask(task)) return { task, ...base };
  const sel = (id: string) => (document.getElementById(`f-${id}`) as HTMLSelectElement).value;
  const targets = (document.getElementById('f-targets') as HTMLInputElement).value.split(/[\s,]+/).filter(Boolean);
  return { task, ...base, modelDir: sel('model'), dataFile: sel('data'), seqLen: v('seqLen'), batchSize: v('batchSize'), ...(targets.length ? { targets } : {}) };
}

const CAUSAL_NOTE = 'Hugging Face causal LM in the workspace (Llama family or GPT-2 folder: config.json + tokenizer.json + *.safetensors) on a .jsonl / .txt dataset; 10 % of the packed sequences are held out for the evaluation. Stop ends the run: it cannot be resumed and nothing is saved (Start begins again).';
const BUILTIN_NOTE = 'A tiny attention-only transformer; its base is pre-trained once per task and kept in lora-lens-training/. Stop → Resume continues both runs.';

/** Shows the causal-lm fields, the task's description and (research presets) its caveat. */
function syncTask(): void {
  const task = (document.getElementById('f-task') as HTMLSelectElement | null)?.value as TrainTask | undefined;
  if (!task) return;
  const causal = document.getElementById('causal-fields');
  if (causal) causal.hidden = task !== 'causal-lm';
  const info = snap?.tasks.find((t) => t.id === task);
  const note = document.getElementById('task-note');
  if (note) note.textContent = info ? `${info.description} ${BUILTIN_NOTE}` : CAUSAL_NOTE;
  const cav = document.getElementById('task-caveat');
  if (cav) {
    cav.hidden = !info?.caveat;
    cav.replaceChildren(...(info?.caveat ? [h('div', { class: 'warnings-title' }, 'Research preset: what to expect'), h('div', {}, info.caveat)] : []));
  }
  // The causal-LM run is evaluated once, at the end (Result): no live accuracy chart for it.
  const accCard = document.getElementById('acc-card');
  if (accCard) accCard.style.display = task === 'causal-lm' ? 'none' : ''; // CSSOM, allowed under the CSP
  const accHint = document.querySelector('#acc-card .hint');
  if (accHint) accHint.textContent = task === 'causal-lm' ? 'built-in tasks only: the causal-LM run is evaluated once at the end (see Result)' : `${METRIC_DEFINITIONS.builtin.accuracy}; every 20 steps${info ? `; chance ${pct(info.chance)}` : ''}`;
  const lossHint = document.querySelector('#loss-card .hint');
  if (lossHint) lossHint.textContent = task === 'causal-lm' ? `training batch: ${METRIC_DEFINITIONS.causal.loss.split(' (')[0]}` : `training pairs: ${METRIC_DEFINITIONS.builtin.loss}`;
  const resume = document.getElementById('train-resume');
  if (resume) resume.title = task === 'causal-lm' ? 'Causal-LM runs cannot be resumed (Stop ends the run)' : 'Continue the stopped run';
  app.dataset.task = task;
}

function select(id: string, options: string[], value: string | undefined, empty: string, title: string): HTMLElement {
  const sel = h('select', { id, title },
    ...(options.length ? options.map((o) => h('option', { value: o, selected: o === value }, o)) : [h('option', { value: '' }, empty)]));
  return sel;
}

function act(type: 'start' | 'stop' | 'resume'): void {
  const err = document.getElementById('run-error')!;
  err.textContent = '';
  const p = type === 'start' ? channel.request({ type, form: readForm() }) : channel.request({ type });
  p.catch((e: Error) => { err.textContent = `Could not ${type}: ${e.message}`; });
}

const RUNNING: RunStatus[] = ['running', 'pretraining', 'stopping'];

function renderStatus(): void {
  if (!snap) return;
  const running = RUNNING.includes(snap.status);
  const set = (id: string, disabled: boolean) => { const b = document.getElementById(id) as HTMLButtonElement | null; if (b) b.disabled = disabled; };
  set('train-start', running);
  set('train-stop', !running || snap.status === 'stopping');
  set('train-resume', running || !snap.canResume);
  for (const el of document.querySelectorAll<HTMLInputElement | HTMLSelectElement>('.train-form input, .train-form select')) el.disabled = running;
  const st = document.getElementById('run-status');
  if (st) { st.textContent = snap.status; st.className = `badge status-${snap.status}`; }
  const msg = document.getElementById('run-message');
  if (msg) msg.textContent = snap.message;
  // A failed run stays visible in the panel (not only as a toast) until the next Start.
  const err = document.getElementById('run-error');
  if (err && snap.status === 'error') err.textContent = `The run failed: ${snap.message}`;
  const pv = document.getElementById('provider');
  if (pv) {
    const p = snap.provider;
    pv.textContent = `setting ${p.setting}${p.used ? ` · used ${p.used}` : ''}`;
    pv.title = p.reason ?? 'onnxruntime execution provider (setting loraLens.executionProvider)';
  }
  app.dataset.status = snap.status;
}

function renderResult(): void {
  const host = document.getElementById('result-card');
  if (!host || !snap) return;
  const r: TrainJobResult | undefined = snap.result;
  if (!r || r.stopped || !r.saved) { host.replaceChildren(); host.hidden = true; return; }
  host.hidden = false;
  const btn = (id: string, label: string, cls: string, f: () => Promise<unknown>) => {
    const b = h('button', { id, class: cls, type: 'button' }, label);
    b.addEventListener('click', () => void f().catch((e: Error) => { document.getElementById('run-error')!.textContent = e.message; }));
    return b;
  };
  const e = r.eval;
  const causal = r.task === 'causal-lm';
  const defs = causal ? METRIC_DEFINITIONS.causal : METRIC_DEFINITIONS.builtin;
  const info = snap.tasks.find((t) => t.id === r.task);
  const hint = causal
    ? `${r.data?.test ?? '?'} held-out of ${(r.data?.train ?? 0) + (r.data?.test ?? 0)} sequences (${r.data?.seqLen ?? '?'} tokens), ${r.step} steps, ${(r.ms / 1000).toFixed(1)} s on ${r.provider.used}`
    : `${info?.title ?? r.task}: pairs never trained on, ${r.step} steps, ${(r.ms / 1000).toFixed(1)} s on ${r.provider.used}`;
  const row = (label: string, path: string | undefined, ev: { loss: number; acc: number } | undefined, mode: string) => h('tr', { 'data-module': mode },
    h('td', { class: 'name' }, label),
    h('td', { class: 'num', 'data-metric': 'loss', 'data-value': String(ev?.loss ?? '') }, fmt(ev?.loss)),
    ...(causal ? [h('td', { class: 'num', 'data-metric': 'perplexity', 'data-value': String(ev ? Math.exp(ev.loss) : '') }, fmt(ev ? Math.exp(ev.loss) : undefined))] : []),
    h('td', { class: 'num', 'data-metric': 'acc', 'data-value': String(ev?.acc ?? '') }, pct(ev?.acc)),
    h('td', { class: 'name', title: path ?? '' }, path ? path.split(/[\\/]/).slice(-2).join('/') : '–'),
    h('td', {}, path ? btn(`analyze-${mode}`, 'Analyze', 'secondary', () => channel.request({ type: 'analyze', path })) : ''));
  const accHead = causal ? 'held-out next-token accuracy' : 'held-out accuracy';
  host.replaceChildren(
    h('div', { class: 'card-head' }, h('h2', {}, 'Result'), h('span', { class: 'hint' }, hint), h('div', { class: 'spacer' }),
      btn('reveal-trained', 'Reveal in tree', 'primary', () => channel.request({ type: 'reveal', path: r.saved!.lora }))),
    h('div', { class: 'table-wrap' }, h('table', { class: 'data', id: 'result-table' },
      h('thead', {}, h('tr', {}, h('th', {}, 'run'), h('th', { class: 'num', title: defs.loss }, 'held-out loss'),
        ...(causal ? [h('th', { class: 'num', title: METRIC_DEFINITIONS.causal.perplexity }, 'perplexity')] : []),
        h('th', { class: 'num', title: defs.accuracy }, accHead), h('th', {}, 'saved adapter'), h('th', {}, ''))),
      h('tbody', {}, row('base (no adapter)', undefined, e?.base, 'base'), row('LoRA', r.saved.lora, e?.lora, 'lora'), row('BaLoRA', r.saved.balora, e?.balora, 'balora')))),
    h('dl', { class: 'definitions', id: 'metric-definitions' },
      h('dt', {}, 'loss'), h('dd', {}, defs.loss),
      ...(causal ? [h('dt', {}, 'perplexity'), h('dd', {}, METRIC_DEFINITIONS.causal.perplexity)] : []),
      h('dt', {}, 'accuracy'), h('dd', {}, `${defs.accuracy}${info ? ` (chance ${pct(info.chance)})` : ''}`),
      h('dt', {}, 'saved'), h('dd', {}, 'each adapter folder holds training_metrics.json with these numbers and definitions')),
    ...(info?.caveat ? [h('div', { class: 'warnings', id: 'result-caveat' }, h('div', { class: 'warnings-title' }, 'Why these numbers'), h('div', {}, info.caveat))] : []));
}

function render(): void {
  for (const k of Object.keys(live) as (keyof typeof live)[]) { live[k]?.chart.destroy(); live[k] = undefined; }
  pending = [];
  if (!snap) return;
  const f = snap.form;
  const start = h('button', { id: 'train-start', class: 'primary', type: 'button', title: 'Start a new run (LoRA and BaLoRA side by side)' }, 'Start');
  const stop = h('button', { id: 'train-stop', class: 'secondary', type: 'button', title: 'Stop between steps; Resume continues' }, 'Stop');
  const resume = h('button', { id: 'train-resume', class: 'secondary', type: 'button', title: 'Continue the stopped run' }, 'Resume');
  start.addEventListener('click', () => act('start'));
  stop.addEventListener('click', () => act('stop'));
  resume.addEventListener('click', () => act('resume'));
  const taskSel = h('select', { id: 'f-task', title: 'what to fine-tune' },
    ...snap.tasks.map((t) => h('option', { value: t.id, selected: f.task === t.id }, t.title)),
    h('option', { value: 'causal-lm', selected: f.task === 'causal-lm' }, 'Causal LM: a model folder + dataset in the workspace'));
  taskSel.addEventListener('change', syncTask);
  const header = h('header', { class: 'card header-card', id: 'training-header' },
    h('div', { class: 'title-row' },
      h('div', { class: 'title' }, h('h1', {}, 'Train LoRA / BaLoRA'), h('span', { class: 'badge', id: 'run-status' }, snap.status)),
      h('div', { class: 'actions' }, start, stop, resume)),
    h('div', { class: 'train-form' },
      h('label', { class: 'field', for: 'f-task' }, h('span', {}, 'task'),
        taskSel),
      num('r', 'rank r', f.r, { min: 1, max: 256, step: 1 }, 'LoRA rank (≤ 32 for the built-in tasks)'),
      num('alpha', 'alpha', f.alpha, { min: 0.001, step: 'any' }, 'lora_alpha (scale α/r)'),
      num('lr', 'learning rate', f.lr, { min: 1e-6, max: 1, step: 'any' }, 'AdamW learning rate (built-in tasks: cosine decay to 2 % over the steps)'),
      num('steps', 'steps', f.steps, { min: 1, max: 100000, step: 1 }, 'optimizer steps per run'),
      num('seed', 'seed', f.seed, { min: 0, step: 1 }, 'data split / init seed')),
    h('div', { class: 'train-form causal-form', id: 'causal-fields', hidden: f.task !== 'causal-lm' },
      h('label', { class: 'field', for: 'f-model' }, h('span', {}, 'model folder'),
        select('f-model', snap.models, f.modelDir, '(no model folder found)', 'Hugging Face model folder in the workspace: config.json + tokenizer.json + *.safetensors (Llama family or GPT-2)')),
      h('label', { class: 'field', for: 'f-data' }, h('span', {}, 'dataset'),
        select('f-data', snap.datasets, f.dataFile, '(no .jsonl / .txt found)', 'JSONL ({"text"} or {"prompt","completion"} per line) or plain text, tokenized with the model\'s tokenizer.json')),
      num('seqLen', 'seq len', f.seqLen ?? CAUSAL_DEFAULTS.seqLen, { min: 4, max: 4096, step: 1 }, 'tokens per packed sequence'),
      num('batchSize', 'batch', f.batchSize ?? CAUSAL_DEFAULTS.batchSize, { min: 1, max: 256, step: 1 }, 'sequences per step'),
      h('label', { class: 'field', for: 'f-targets', title: 'LoRA target modules, comma-separated (Llama: q_proj … down_proj; GPT-2: c_attn, c_proj, c_fc)' }, h('span', {}, 'targets'),
        h('input', { type: 'text', id: 'f-targets', name: 'targets', value: (f.targets ?? []).join(', '), placeholder: 'default: q_proj, v_proj / c_attn' }))),
    h('p', { class: 'hint task-note', id: 'task-note' }),
    h('div', { class: 'warnings task-caveat', id: 'task-caveat', hidden: true }),
    h('dl', { class: 'facts' },
      h('div', { class: 'fact', 'data-fact': 'provider' }, h('dt', {}, 'ORT provider'), h('dd', { id: 'provider' }, '')),
      h('div', { class: 'fact', 'data-fact': 'step' }, h('dt', {}, 'step'), h('dd', { id: 'current-step' }, '–')),
      h('div', { class: 'fact', 'data-fact': 'loss' }, h('dt', {}, 'training loss now'), h('dd', { id: 'loss-now' }, '–')),
      h('div', { class: 'fact', 'data-fact': 'accuracy' }, h('dt', {}, 'held-out accuracy'), h('dd', { id: 'acc-now' }, '–')),
      h('div', { class: 'fact wide', 'data-fact': 'message' }, h('dt', {}, 'status'), h('dd', { id: 'run-message' }, ''))),
    h('div', { class: 'run-error', id: 'run-error', role: 'alert' }));
  const charts = h('section', { class: 'charts' },
    makeChart('loss', 'Training loss', 'cross-entropy, LoRA vs BaLoRA', 'loss (nats)'),
    makeChart('acc', 'Held-out accuracy', 'answer accuracy on pairs never trained on', 'accuracy'),
    makeChart('gap', 'Balance gap', '‖BᵀB − AAᵀ‖_F, max over modules', 'gap'),
    makeChart('kappa', 'Condition numbers', 'κ(A), κ(B), max over modules', 'κ'));
  const result = h('section', { class: 'card', id: 'result-card', hidden: true });
  app.replaceChildren(header, charts, result);
  syncTask();
  renderStatus();
  renderResult();
  requestAnimationFrame(() => drainPoints());
}

onThemeChange(render);
channel.post({ type: 'ready' });
