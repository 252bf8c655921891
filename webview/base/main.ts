/**
 * Base-model webviews (one bundle, the view comes with `init`):
 * - intruders: layers × module-kind heatmap (HTML grid, cells carry data-layer / data-kind /
 *   data-count), totals, module table, per-module top-k vectors, "Mitigate (λ)".
 * - spectra: σ of W0, W0+ΔW and ΔW (log y), ESD histograms, WeightWatcher-style metrics.
 * - compare: per-tensor relative change ‖W1−W0‖_F/‖W0‖_F (chart + table), ΔW spectra and
 *   intruders of W1 vs W0 for a selected 2-D tensor.
 * chart.js is tree-shaken; colours come from the VS Code theme.
 */
import {
  BarController, BarElement, CategoryScale, Chart, Filler, Legend, LinearScale, LineController, LineElement, LogarithmicScale,
  PointElement, Tooltip, type ChartDataset,
} from 'chart.js';
import { fmt4 } from '../../src/shared/report';
import { onThemeChange, themeColors } from '../common/theme';
import { h, HostChannel } from '../common/vscodeApi';
import type {
  CompareData, CompareTensorData, CompareTensorRow, EsdMetricsData, HostToWebview, InitMessage, IntruderModuleData, IntrudersData,
  IntruderVectorData, ModelInit, ModelModuleRow, ReplyResult, SpectraData, SpectraInit, WebviewToHost,
} from '../../src/shared/base';
import { verifiedText } from '../../src/shared/base';
import { axisTick, fact, logTick } from '../common/format';

Chart.register(LineController, LineElement, PointElement, BarController, BarElement, LinearScale, LogarithmicScale, CategoryScale, Filler, Legend, Tooltip);

interface State { module?: string; lambda?: number; tensor?: string; filter?: string }
type Reply = Extract<HostToWebview, { type: 'reply' }>;

let current: InitMessage | undefined;
const charts = new Map<string, { destroy(): void }>();
let rebuild: (() => void)[] = [];
/** Analyze Model: refreshes the progress, heatmap and table after a streamed row. */
let modelUpdate: (() => void) | undefined;

const channel = new HostChannel<WebviewToHost, HostToWebview, State>((m) => {
  switch (m.type) {
    case 'init':
      current = m;
      render();
      break;
    case 'busy':
      document.body.classList.toggle('busy', m.busy);
      break;
    case 'modelRow':
      if (current?.view === 'model') {
        const d = current.data;
        if (!d.rows.some((r) => r.name === m.row.name)) d.rows.push(m.row);
        d.total = m.total;
        d.elapsedMs = m.elapsedMs;
        d.doneThisRun = m.doneThisRun;
        d.state = 'running';
        modelUpdate?.();
      }
      break;
    case 'modelState':
      if (current?.view === 'model') {
        current.data.state = m.state;
        current.data.total = m.total;
        if (m.message) current.data.message = m.message;
        modelUpdate?.();
      }
      break;
    case 'reply':
      break;
  }
});
const state: State = { ...channel.api.getState() };
const save = (): void => channel.api.setState(state);
window.addEventListener('error', (e) => channel.post({ type: 'log', level: 'error', message: `${e.message} @${e.filename}:${e.lineno}` }));
onThemeChange(() => rebuild.forEach((f) => f()));

const app = document.getElementById('app')!;

// ---------------------------------------------------------------- helpers




function engineText(e: { provider: string; fallbackReason?: string }): string {
  return `ORT: ${e.provider}${e.fallbackReason ? ` (fallback: ${e.fallbackReason})` : ''}`;
}

function statusBadge(s: IntruderVectorData['status']): HTMLElement {
  const label = s === 'intruder' ? 'intruder' : s === 'possible' ? 'possible' : 'ok';
  return h('span', { class: `badge small status-${s}`, title: s === 'possible' ? 'approximate mode: the bound on max|cos| straddles ε' : '' }, label);
}

/** Request helper: disables `btn`, shows the reply message or error in `status`. */
async function request(m: Parameters<typeof channel.request>[0], btn: HTMLButtonElement | HTMLSelectElement | undefined, status: HTMLElement): Promise<ReplyResult | undefined> {
  if (btn) btn.disabled = true;
  status.textContent = 'Working…';
  status.classList.remove('error');
  try {
    const r = await channel.request<Reply>(m);
    status.textContent = r.message ?? '';
    return r.result;
  } catch (e) {
    status.textContent = (e as Error).message;
    status.classList.add('error');
    return undefined;
  } finally {
    if (btn) btn.disabled = false;
  }
}

function lineChart(id: string, canvas: HTMLCanvasElement, datasets: ChartDataset<'line', { x: number; y: number | null }[]>[], o: { xTitle: string; yTitle: string; logX?: boolean; logY?: boolean }): void {
  charts.get(id)?.destroy();
  const c = themeColors();
  charts.set(id, new Chart<'line', { x: number; y: number | null }[]>(canvas, {
    type: 'line',
    data: { datasets },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false, parsing: false,
      interaction: { mode: 'nearest', intersect: false },
      plugins: {
        legend: { position: 'bottom', labels: { color: c.fg, boxWidth: 12, boxHeight: 2, font: { size: 11 } } },
        tooltip: { callbacks: { label: (ctx) => `${ctx.dataset.label}: ${fmt4(ctx.parsed.y ?? undefined)}` } },
      },
      scales: {
        x: { type: o.logX ? 'logarithmic' : 'linear', title: { display: true, text: o.xTitle, color: c.muted }, ticks: { color: c.muted, callback: o.logX ? logTick : (v) => axisTick(Number(v)) }, grid: { color: c.grid } },
        y: { type: o.logY ? 'logarithmic' : 'linear', title: { display: true, text: o.yTitle, color: c.muted }, ticks: { color: c.muted, callback: o.logY ? logTick : (v) => axisTick(Number(v)) }, grid: { color: c.grid } },
      },
    },
  }));
}

function sigmaSeries(label: string, values: number[], color: string, dash?: number[]): ChartDataset<'line', { x: number; y: number | null }[]> {
  return {
    label, data: values.map((y, i) => ({ x: i + 1, y: y > 0 ? y : null })), borderColor: color, backgroundColor: color,
    borderWidth: 1.75, pointRadius: values.length > 80 ? 0 : 2, borderDash: dash, tension: 0, spanGaps: false,
  };
}

function table(id: string, head: string[], rows: HTMLElement[], numeric: boolean[]): HTMLElement {
  return h('div', { class: 'table-wrap' }, h('table', { id, class: 'data' },
    h('thead', {}, h('tr', {}, ...head.map((t, i) => h('th', { class: numeric[i] ? 'num' : '', scope: 'col' }, t)))),
    h('tbody', {}, ...rows)));
}

function afterLayout(fn: () => void): void {
  rebuild.push(fn);
  requestAnimationFrame(fn);
}

// ---------------------------------------------------------------- intruders

function moduleShort(name: string, layer?: number): string {
  if (layer === undefined) return name;
  const m = new RegExp(`(?:^|\\.)[A-Za-z_]+\\.${layer}\\.(.+)$`).exec(name);
  return m ? m[1] : name;
}

const KIND_ORDER = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'qkv_proj', 'c_attn', 'c_proj', 'gate_proj', 'up_proj', 'down_proj', 'gate_up_proj', 'c_fc'];

/** Column of the heatmap: the module kind (q_proj…), or the path below the layer when kinds repeat. */
function kindLabel(m: IntruderModuleData): string {
  return m.kind;
}

function kindRank(k: string): number {
  const i = KIND_ORDER.indexOf(k);
  return i < 0 ? KIND_ORDER.length : i;
}

function vectorTable(vs: IntruderVectorData[], approx: boolean, id: string): HTMLElement {
  const head = ['j', 'σⱼ of merged', 'max|cos|', 'best base i', 'status'];
  const num = [true, true, true, true, false];
  if (approx) { head.splice(3, 0, 'upper bound'); num.splice(3, 0, true); }
  return table(id, head, vs.map((v) => {
    const cells = [
      h('td', { class: 'num' }, String(v.index)),
      h('td', { class: 'num' }, fmt4(v.sigma)),
      h('td', { class: 'num', 'data-metric': 'maxCos', 'data-value': String(v.maxCos) }, v.maxCos.toFixed(3)),
    ];
    if (approx) cells.push(h('td', { class: 'num' }, v.upperBound !== undefined ? v.upperBound.toFixed(3) : '–'));
    cells.push(h('td', { class: 'num' }, String(v.baseIndex)), h('td', {}, statusBadge(v.status)));
    return h('tr', { class: `vec-${v.status}`, 'data-index': v.index, 'data-status': v.status }, ...cells);
  }), num);
}

function renderIntruders(d: IntrudersData): HTMLElement[] {
  const t = d.totals;
  const lambda = h('input', { type: 'number', id: 'lambda-input', min: 0, max: 1, step: 0.05, value: String(state.lambda ?? d.settings.lambda ?? 0.75), 'aria-label': 'λ: scale of intruder singular values' });
  const status = h('span', { id: 'mitigate-status', class: 'status-text', role: 'status' });
  const btn = h('button', { id: 'mitigate-btn', class: 'primary', type: 'button', title: 'Write a NEW PEFT adapter whose intruder singular values are scaled by λ (PEFT reduce_intruder_dimension)' }, 'Mitigate (λ)');
  btn.disabled = t.intruders === 0;
  btn.addEventListener('click', async () => {
    const l = Number(lambda.value);
    if (!(l >= 0 && l <= 1)) { status.textContent = 'λ must be in [0, 1]'; status.classList.add('error'); return; }
    state.lambda = l;
    save();
    const r = await request({ type: 'mitigate', lambda: l }, btn, status);
    if (r?.kind === 'mitigate') {
      const after = r.data.changed.reduce((s, c) => s + c.intrudersAfter, 0);
      status.textContent = `Wrote ${r.data.outDir} — ${r.data.changed.length} modules rescaled; intruders after: ${after}. ${verifiedText(r.data.verification)}`;
    }
  });
  const header = h('header', { class: 'card header-card', id: 'intruders-header' },
    h('div', { class: 'title-row' },
      h('div', { class: 'title' }, h('h1', {}, `Intruder dimensions — ${d.adapter.name}`), h('span', { class: 'badge accent' }, d.modules.some((m) => m.mode === 'approx') ? 'approximate' : 'exact')),
      h('div', { class: 'actions' }, h('label', { class: 'check', for: 'lambda-input' }, 'λ'), lambda, btn)),
    // the status (e.g. "Wrote …/long/path …" after Mitigate) has its own line: inside the title row it
    // squeezed the title to a one-letter column at ~900 px (issue 13 item 8)
    h('div', { class: 'status-line' }, status),
    h('div', { class: 'path', title: d.adapter.path }, d.adapter.path),
    h('dl', { class: 'facts' },
      fact('Intruders', String(t.intruders), 'total'),
      fact('Possible', String(t.possible), 'possible'),
      fact('Modules', `${t.analysed} of ${t.modules}${d.errors.length ? ` (${d.errors.length} failed)` : ''}`, 'modules'),
      fact('Rule', `top-${d.settings.k} left vectors of W0+ΔW, intruder iff max|cos| < ε = ${d.settings.epsilon}`, 'rule'),
      fact('Base model', d.base.dir, 'base'),
      fact('Engine', engineText(d.engine), 'engine'),
      fact('Cache', `${d.cache.hits} hits · ${d.cache.misses} computed`, 'cache'),
      fact('Time', `${d.ms} ms`, 'time'),
    ));
  const notes = [...new Set(d.modules.flatMap((m) => m.notes))];
  if (notes.length || d.errors.length) {
    header.append(h('div', { class: 'warnings' }, h('ul', {}, ...notes.map((n) => h('li', {}, n)), ...d.errors.map((e) => h('li', {}, `${e.name}: ${e.message}`)))));
  }

  // heatmap: layers × kinds
  const kinds: string[] = [];
  const useKind = new Set(d.modules.map((m) => `${m.layer ?? -1}|${m.kind}`)).size === d.modules.length;
  const label = (m: IntruderModuleData): string => (useKind ? kindLabel(m) : moduleShort(m.name, m.layer));
  for (const m of d.modules) if (!kinds.includes(label(m))) kinds.push(label(m));
  kinds.sort((a, b) => kindRank(a) - kindRank(b));
  const layers = [...new Set(d.modules.map((m) => m.layer ?? -1))].sort((a, b) => a - b);
  const maxCount = Math.max(1, ...d.modules.map((m) => m.count));
  const detail = h('section', { class: 'card', id: 'module-detail' });
  const grid = h('div', { class: 'heatmap', id: 'intruder-heatmap', role: 'grid', 'data-columns': kinds.length });
  grid.classList.add(`cols-${Math.min(kinds.length, 12)}`);
  grid.append(h('div', { class: 'heat-corner' }, 'layer'), ...kinds.map((k) => h('div', { class: 'heat-col', title: k }, k)));
  const select = (m: IntruderModuleData): void => {
    state.module = m.name;
    save();
    grid.querySelector('.heat-cell.selected')?.classList.remove('selected');
    grid.querySelector(`.heat-cell[data-module="${CSS.escape(m.name)}"]`)?.classList.add('selected');
    tbody.querySelector('tr.selected')?.classList.remove('selected');
    tbody.querySelector(`tr[data-module="${CSS.escape(m.name)}"]`)?.classList.add('selected');
    const spectraBtn = h('button', { class: 'secondary', type: 'button', id: 'open-spectra' }, 'Spectra…');
    const st = h('span', { class: 'status-text' });
    spectraBtn.addEventListener('click', () => void request({ type: 'openSpectra', module: m.name }, spectraBtn, st));
    detail.replaceChildren(
      h('div', { class: 'card-head' }, h('h2', {}, m.name), h('span', { class: 'hint' }, `${m.m}×${m.n} · ${m.mode} · ${m.baseVectors} base vectors · ${m.baseTensor}`),
        h('div', { class: 'spacer' }), st, spectraBtn),
      vectorTable(m.vectors, m.mode === 'approx', 'vector-table'));
  };
  for (const l of layers) {
    grid.append(h('div', { class: 'heat-row' }, l < 0 ? '–' : String(l)));
    for (const k of kinds) {
      const m = d.modules.find((x) => (x.layer ?? -1) === l && label(x) === k);
      if (!m) { grid.append(h('div', { class: 'heat-cell empty', 'data-layer': l, 'data-kind': k })); continue; }
      const level = m.count === 0 ? 0 : Math.max(1, Math.ceil((5 * m.count) / maxCount));
      const cell = h('div', {
        class: `heat-cell level-${level}${m.possible ? ' has-possible' : ''}`, role: 'gridcell', tabindex: 0,
        'data-layer': l, 'data-kind': k, 'data-count': m.count, 'data-possible': m.possible, 'data-module': m.name,
        title: `${m.name}\n${m.count} intruder${m.count === 1 ? '' : 's'}${m.possible ? `, ${m.possible} possible` : ''} of top-${d.settings.k}`,
      }, String(m.count), m.possible ? h('span', { class: 'possible-mark' }, `+${m.possible}?`) : undefined);
      cell.addEventListener('click', () => select(m));
      cell.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); select(m); } });
      grid.append(cell);
    }
  }
  const legend = h('div', { class: 'heat-legend' }, h('span', { class: 'hint' }, '0'),
    ...[0, 1, 2, 3, 4, 5].map((i) => h('span', { class: `heat-swatch level-${i}` })), h('span', { class: 'hint' }, `${maxCount} intruders`));
  const heatCard = h('section', { class: 'card', id: 'heatmap-card' },
    h('div', { class: 'card-head' }, h('h2', {}, 'Intruders per layer and module'), h('span', { class: 'hint' }, 'count of certain intruders; +n? = possible (approximate mode)'), h('div', { class: 'spacer' }), legend),
    h('div', { class: 'heatmap-wrap' }, grid));

  const tbody = h('tbody');
  for (const m of d.modules) {
    const tr = h('tr', { 'data-module': m.name, 'data-count': m.count },
      h('td', { class: 'name' }, m.name), h('td', { class: 'num' }, m.layer === undefined ? '–' : String(m.layer)),
      h('td', {}, `${m.m}×${m.n}`), h('td', {}, m.mode), h('td', { class: 'num' }, String(m.count)), h('td', { class: 'num' }, String(m.possible)),
      h('td', { class: 'num' }, Math.min(...m.vectors.map((v) => v.maxCos)).toFixed(3)));
    tr.addEventListener('click', () => select(m));
    tbody.append(tr);
  }
  const tableCard = h('section', { class: 'card table-card' }, h('div', { class: 'card-head' }, h('h2', {}, 'Modules'), h('span', { class: 'hint' }, `${d.modules.length} modules`)),
    h('div', { class: 'table-wrap' }, h('table', { id: 'intruder-table', class: 'data' },
      h('thead', {}, h('tr', {}, ...['Module', 'layer', 'shape', 'mode', 'intruders', 'possible', 'min max|cos|'].map((x, i) => h('th', { class: i === 1 || i >= 4 ? 'num' : '', scope: 'col' }, x)))),
      tbody)));
  const first = d.modules.find((m) => m.name === state.module) ?? [...d.modules].sort((a, b) => b.count - a.count)[0];
  if (first) requestAnimationFrame(() => select(first));
  else detail.append(h('p', { class: 'hint' }, 'No modules analysed.'));
  return [header, h('div', { class: 'two-col' }, heatCard, detail), tableCard];
}

// ---------------------------------------------------------------- spectra

const METRIC_ROWS: { key: keyof EsdMetricsData; label: string; title: string }[] = [
  { key: 'alpha', label: 'alpha', title: 'power-law exponent of the ESD tail (WeightWatcher ww fit)' },
  { key: 'alpha_weighted', label: 'alpha_weighted', title: 'alpha · log10 λmax' },
  { key: 'log_norm', label: 'log_norm', title: 'log10 Σλ = log10 ‖W‖_F²' },
  { key: 'log_spectral_norm', label: 'log_spectral_norm', title: 'log10 λmax' },
  { key: 'stable_rank', label: 'stable_rank', title: 'Σλ / λmax' },
  { key: 'entropy', label: 'entropy', title: 'normalised spectral entropy' },
  { key: 'mp_softrank', label: 'mp_softrank', title: 'Marchenko–Pastur bulk edge / λmax' },
  { key: 'num_pl_spikes', label: 'num_pl_spikes', title: 'eigenvalues in the fitted power-law tail' },
  { key: 'D', label: 'D', title: 'Kolmogorov–Smirnov distance of the fit' },
  { key: 'matrix_rank', label: 'matrix_rank', title: 'numerical rank (σ > σmax·max(N, M)·eps, fp64)' },
  { key: 'num_evals', label: 'eigenvalues', title: 'number of eigenvalues used' },
];

/** Metrics that come from the power-law fit: shown only when alpha_status is 'fitted'. */
const ALPHA_KEYS = new Set<keyof EsdMetricsData>(['alpha', 'alpha_weighted', 'num_pl_spikes', 'D']);
/** Metrics that need every singular value. */
const FULL_KEYS = new Set<keyof EsdMetricsData>(['entropy', 'matrix_rank']);

function fmtMetric(v: unknown): string {
  return typeof v === 'number' && Number.isInteger(v) ? String(v) : fmt4(v as number);
}

/** Why a metric has no number ("not fittable (< 50 eigenvalues)", "needs the full spectrum"); undefined when it has one. */
function metricText(e: EsdMetricsData, key: keyof EsdMetricsData): string | undefined {
  if (ALPHA_KEYS.has(key)) {
    if (e.alpha_status === 'not fittable') return 'not fittable (< 50 eigenvalues)';
    if (e.alpha_status === 'truncated') return 'needs the full spectrum';
  }
  if (FULL_KEYS.has(key) && !e.full_spectrum) return 'needs the full spectrum';
  const v = e[key];
  if (typeof v === 'number' && Number.isNaN(v)) return 'n/a';
  return undefined;
}

function renderSpectraData(s: SpectraData, box: HTMLElement): void {
  const c = themeColors();
  const sigmaCanvas = h('canvas', { id: 'sigma-chart', role: 'img', 'aria-label': 'singular values of W0, W0+ΔW and ΔW' });
  const esdCanvas = h('canvas', { id: 'esd-chart', role: 'img', 'aria-label': 'ESD histograms of W0 and W0+ΔW' });
  const cell = (which: 'base' | 'merged', key: keyof EsdMetricsData): HTMLElement => {
    const e = s.metrics[which];
    const v = e[key];
    const text = metricText(e, key);
    return h('td', { class: `num${text === undefined ? '' : ' not-available'}`, 'data-which': which, 'data-value': String(v), 'data-status': ALPHA_KEYS.has(key) ? e.alpha_status : undefined }, text ?? fmtMetric(v));
  };
  const metricsRows = METRIC_ROWS.map((r) => h('tr', { 'data-metric': r.key, title: r.title }, h('td', {}, r.label), cell('base', r.key), cell('merged', r.key)));
  const warns = [...s.metrics.base.warnings.map((w) => `W0: ${w}`), ...s.metrics.merged.warnings.map((w) => `W0+ΔW: ${w}`)];
  box.replaceChildren(
    h('section', { class: 'card', id: 'spectra-facts' }, h('dl', { class: 'facts' },
      fact('Module', s.module, 'module'), fact('Base tensor', s.baseTensor, 'tensor'), fact('Shape', `${s.m}×${s.n}`, 'shape'),
      fact('ΔW', `rank ${s.rank} · s = ${fmt4(s.scale)}`, 'delta'),
      fact('Spectrum', s.full ? `full (${s.k} of ${Math.min(s.m, s.n)})` : `top-${s.k} (rsvd) of ${Math.min(s.m, s.n)}`, 'spectrum'),
      fact('Base decomposition', s.baseCached ? 'from cache' : 'computed (now cached)', 'cached'),
      fact('Engine', engineText(s.engine), 'engine'), fact('Time', `${s.ms} ms`, 'time'))),
    h('div', { class: 'charts' },
      h('div', { class: 'card chart-card', id: 'sigma-card' }, h('div', { class: 'card-head' }, h('h2', {}, 'Singular values'), h('span', { class: 'hint' }, 'σᵢ, log scale')), h('div', { class: 'chart-box' }, sigmaCanvas)),
      h('div', { class: 'card chart-card', id: 'esd-card' }, h('div', { class: 'card-head' }, h('h2', {}, 'ESD'), h('span', { class: 'hint' }, 'histogram of λ = σ², log-binned')), h('div', { class: 'chart-box' }, esdCanvas))),
    h('section', { class: 'card', id: 'metrics-card' }, h('div', { class: 'card-head' }, h('h2', {}, 'Spectral metrics'), h('span', { class: 'hint' }, 'WeightWatcher conventions (λ = σ², no 1/N)')),
      table('metrics-table', ['metric', 'W0', 'W0 + ΔW'], metricsRows, [false, true, true]),
      warns.length ? h('div', { class: 'warnings', id: 'metrics-warnings' }, h('ul', {}, ...warns.map((w) => h('li', {}, w)))) : undefined),
  );
  const step = (hist: SpectraData['esd']['base']): { x: number; y: number | null }[] => {
    const pts = hist.counts.map((y, i) => ({ x: hist.edges[i], y }));
    if (hist.counts.length) pts.push({ x: hist.edges[hist.edges.length - 1], y: hist.counts[hist.counts.length - 1] });
    return pts;
  };
  afterLayout(() => {
    const col = themeColors().series;
    lineChart('sigma', sigmaCanvas, [
      sigmaSeries('W0', s.sigma.base, col[0]),
      sigmaSeries('W0 + ΔW', s.sigma.merged, col[1], [5, 3]),
      sigmaSeries('ΔW = s·B·A', s.sigma.delta, col[2]),
    ], { xTitle: 'index i', yTitle: 'σᵢ', logY: true });
    lineChart('esd', esdCanvas, [
      { label: 'W0', data: step(s.esd.base), borderColor: col[0], backgroundColor: col[0], stepped: 'after', pointRadius: 0, borderWidth: 1.75 },
      { label: 'W0 + ΔW', data: step(s.esd.merged), borderColor: col[1], backgroundColor: col[1], stepped: 'after', pointRadius: 0, borderWidth: 1.75, borderDash: [5, 3] },
    ], { xTitle: 'λ = σ²', yTitle: 'count', logX: true });
  });
  void c;
}

function renderSpectra(d: SpectraInit): HTMLElement[] {
  rebuild = [];
  const select = h('select', { id: 'module-select', 'aria-label': 'Module' },
    ...d.modules.map((m) => h('option', { value: m.name, selected: m.name === d.data.module }, `${m.name.replace(/^model\./, '')} (${m.m}×${m.n})`)));
  const status = h('span', { id: 'spectra-status', class: 'status-text', role: 'status' });
  const fullBtn = h('button', { id: 'full-btn', class: 'secondary', type: 'button', title: 'Exact full spectra of W0 and W0+ΔW (asks first, with a time estimate)' }, 'Full spectrum…');
  const box = h('div', { class: 'spectra-box', id: 'spectra-box' });
  const load = async (module: string, full: boolean, btn: HTMLButtonElement | HTMLSelectElement): Promise<void> => {
    const r = await request({ type: 'spectra', module, full }, btn, status);
    if (r?.kind === 'spectra') {
      rebuild = [];
      renderSpectraData(r.data, box);
      fullBtn.disabled = r.data.full;
      status.textContent = r.data.full ? 'Full spectrum' : '';
    }
  };
  select.addEventListener('change', () => void load(select.value, false, select));
  fullBtn.addEventListener('click', () => void load(select.value, true, fullBtn));
  const header = h('header', { class: 'card header-card', id: 'spectra-header' },
    h('div', { class: 'title-row' }, h('div', { class: 'title' }, h('h1', {}, `Spectra — ${d.adapter.name}`)),
      h('div', { class: 'actions' }, status, select, fullBtn)),
    h('div', { class: 'path', title: d.base.dir }, `base: ${d.base.dir}`));
  renderSpectraData(d.data, box);
  fullBtn.disabled = d.data.full;
  if (d.data.full) fullBtn.title = 'This spectrum is already complete';
  return [header, box];
}

// ---------------------------------------------------------------- compare

function shortTensor(n: string): string {
  return n.replace(/^model\./, '').replace(/\.weight$/, '');
}

function renderCompareTensor(t: CompareTensorData, box: HTMLElement): void {
  const canvas = h('canvas', { id: 'delta-chart', role: 'img', 'aria-label': 'singular values of W0, W1 and W1 − W0' });
  const i = t.intruders;
  box.replaceChildren(
    h('div', { class: 'card-head' }, h('h2', {}, t.tensor), h('span', { class: 'hint' }, `${t.m}×${t.n} · top-${t.k} · ${engineText(t.engine)} · ${t.ms} ms${t.baseCached ? ' · W0 from cache' : ''}`)),
    h('div', { class: 'charts' },
      h('div', { class: 'chart-card' }, h('div', { class: 'chart-box' }, canvas)),
      h('div', {},
        h('div', { class: 'card-head' }, h('h2', {}, `Intruders of W1 vs W0: ${i.count}`), h('span', { class: 'hint' }, `${i.mode}, ε = ${i.epsilon}, ${i.baseVectors} base vectors${i.possible ? `, ${i.possible} possible` : ''}`)),
        vectorTable(i.vectors, i.mode === 'approx', 'compare-vector-table'),
        i.notes.length ? h('div', { class: 'warnings' }, h('ul', {}, ...i.notes.map((n) => h('li', {}, n)))) : undefined)),
  );
  afterLayout(() => {
    const col = themeColors().series;
    lineChart('delta', canvas, [
      sigmaSeries('W0 (A)', t.sigma.base, col[0]),
      sigmaSeries('W1 (B)', t.sigma.tuned, col[1], [5, 3]),
      sigmaSeries('ΔW = W1 − W0', t.sigma.delta, col[2]),
    ], { xTitle: 'index i', yTitle: 'σᵢ', logY: true });
  });
}

function renderCompare(d: CompareData): HTMLElement[] {
  rebuild = [];
  const rows = [...d.rows].sort((a, b) => b.relChange - a.relChange);
  const changed = rows.filter((r) => r.relChange > 0);
  const maxRow = rows[0];
  const header = h('header', { class: 'card header-card', id: 'compare-header' },
    h('div', { class: 'title-row' }, h('div', { class: 'title' }, h('h1', {}, 'Compare checkpoints'))),
    h('div', { class: 'path', title: d.a }, `A (W0): ${d.a}`),
    h('div', { class: 'path', title: d.b }, `B (W1): ${d.b}`),
    h('dl', { class: 'facts' },
      fact('Tensors', String(d.rows.length), 'tensors'), fact('Changed', String(changed.length), 'changed'),
      fact('Largest change', maxRow ? `${shortTensor(maxRow.name)}: ${fmt4(maxRow.relChange)}` : '–', 'max'),
      fact('Skipped', String(d.skipped.length), 'skipped'), fact('Engine', engineText(d.engine), 'engine'), fact('Time', `${d.ms} ms`, 'time')));
  if (d.skipped.length) header.append(h('div', { class: 'warnings' }, h('ul', {}, ...d.skipped.slice(0, 20).map((s) => h('li', {}, `${s.name}: ${s.reason}`)))));
  const canvas = h('canvas', { id: 'change-chart', role: 'img', 'aria-label': 'relative change per tensor' });
  const chartCard = h('section', { class: 'card chart-card' }, h('div', { class: 'card-head' }, h('h2', {}, 'Relative change per tensor'), h('span', { class: 'hint' }, '‖W1 − W0‖_F / ‖W0‖_F, file order')),
    h('div', { class: 'chart-box' }, canvas));
  const detail = h('section', { class: 'card', id: 'tensor-detail' }, h('p', { class: 'hint' }, 'Select a 2-D tensor in the table for the spectra of ΔW = W1 − W0 and its intruder dimensions.'));
  const status = h('span', { id: 'compare-status', class: 'status-text', role: 'status' });
  const tbody = h('tbody');
  const pick = async (r: CompareTensorRow, tr: HTMLElement): Promise<void> => {
    if (r.shape.length < 2) { status.textContent = `${r.name} is ${r.shape.length}-D: no spectrum`; return; }
    tbody.querySelector('tr.selected')?.classList.remove('selected');
    tr.classList.add('selected');
    state.tensor = r.name;
    save();
    const res = await request({ type: 'compareTensor', tensor: r.name }, undefined, status);
    if (res?.kind === 'compareTensor') { rebuild = rebuild.slice(0, 1); renderCompareTensor(res.data, detail); }
  };
  for (const r of rows) {
    const tr = h('tr', { 'data-tensor': r.name, 'data-rel': String(r.relChange), class: r.shape.length < 2 ? 'one-d' : '' },
      h('td', { class: 'name' }, r.name), h('td', {}, r.shape.join('×')), h('td', {}, r.dtype),
      h('td', { class: 'num' }, fmt4(r.normBase)), h('td', { class: 'num' }, fmt4(r.normDiff)), h('td', { class: 'num', 'data-metric': 'relChange' }, fmt4(r.relChange)));
    tr.addEventListener('click', () => void pick(r, tr));
    tbody.append(tr);
  }
  const tableCard = h('section', { class: 'card table-card' }, h('div', { class: 'card-head' }, h('h2', {}, 'Tensors'), h('span', { class: 'hint' }, 'sorted by relative change; click a matrix for ΔW spectra'), h('div', { class: 'spacer' }), status),
    h('div', { class: 'table-wrap' }, h('table', { id: 'compare-table', class: 'data' },
      h('thead', {}, h('tr', {}, ...['Tensor', 'shape', 'dtype', '‖W0‖_F', '‖W1 − W0‖_F', 'relative change'].map((x, i) => h('th', { class: i >= 3 ? 'num' : '', scope: 'col' }, x)))),
      tbody)));
  afterLayout(() => {
    charts.get('change')?.destroy();
    const c = themeColors();
    const labels = d.rows.map((r) => shortTensor(r.name));
    charts.set('change', new Chart<'bar', number[], string>(canvas, {
      type: 'bar',
      data: { labels, datasets: [{ label: 'relative change', data: d.rows.map((r) => (Number.isFinite(r.relChange) ? r.relChange : 0)), backgroundColor: c.series[0], borderColor: c.series[0] }] },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { legend: { display: false }, tooltip: { callbacks: { label: (ctx) => `${fmt4(ctx.parsed.y ?? undefined)}` } } },
        scales: {
          x: { ticks: { color: c.muted, autoSkip: true, maxRotation: 60, font: { size: 10 } }, grid: { display: false } },
          y: { title: { display: true, text: '‖W1 − W0‖_F / ‖W0‖_F', color: c.muted }, ticks: { color: c.muted, callback: (v) => axisTick(Number(v)) }, grid: { color: c.grid } },
        },
      },
    }));
  });
  const want = rows.find((r) => r.name === state.tensor) ?? rows.find((r) => r.shape.length >= 2 && r.relChange > 0);
  if (want) requestAnimationFrame(() => { const tr = tbody.querySelector<HTMLElement>(`tr[data-tensor="${CSS.escape(want.name)}"]`); if (tr) void pick(want, tr); });
  return [header, chartCard, detail, tableCard];
}

// ---------------------------------------------------------------- Analyze Model (streamed)

function duration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '–';
  const sec = Math.round(ms / 1000);
  if (sec < 60) return `${sec} s`;
  const min = Math.floor(sec / 60);
  return min < 60 ? `${min} min ${sec % 60} s` : `${Math.floor(min / 60)} h ${min % 60} min`;
}

/** ETA from this run's pace (modules done in this run / time since it started). */
function etaText(d: ModelInit): string {
  const left = d.total - d.rows.length;
  if (d.state !== 'running' || d.total === 0) return '';
  if (d.doneThisRun === 0) return 'ETA after the first module';
  return `ETA ${duration((d.elapsedMs / d.doneThisRun) * left)}`;
}

function alphaCell(e: EsdMetricsData, which: string): HTMLElement {
  const t = metricText(e, 'alpha');
  return h('td', { class: `num${t ? ' not-available' : ''}`, 'data-metric': `alpha-${which}`, 'data-status': e.alpha_status, 'data-value': String(e.alpha) }, t ?? fmt4(e.alpha));
}

function renderModel(d: ModelInit): HTMLElement[] {
  const status = h('span', { id: 'model-status', class: 'status-text', role: 'status' });
  const cancelBtn = h('button', { id: 'model-cancel', class: 'secondary', type: 'button', title: 'Stop after the current module; finished modules are kept' }, 'Cancel');
  const resumeBtn = h('button', { id: 'model-resume', class: 'primary', type: 'button', title: 'Analyse the remaining modules (base decompositions come from the cache)' }, 'Resume');
  cancelBtn.addEventListener('click', () => void request({ type: 'cancelModel' }, cancelBtn, status));
  resumeBtn.addEventListener('click', () => void request({ type: 'resumeModel' }, resumeBtn, status));
  const bar = h('progress', { id: 'model-progress-bar', max: 1, value: 0 });
  const progressText = h('span', { id: 'model-progress-text', class: 'progress-text' });
  const progress = h('div', { class: 'model-progress', id: 'model-progress' }, bar, progressText);
  const message = h('div', { class: 'status-line', id: 'model-message' });
  const warnBox = h('div', { id: 'model-warnings' });
  const header = h('header', { class: 'card header-card', id: 'model-header' },
    h('div', { class: 'title-row' },
      h('div', { class: 'title' }, h('h1', {}, `Analyze Model — ${d.adapter.name}`), h('span', { class: 'badge accent' }, 'intruders + ESD')),
      h('div', { class: 'actions' }, cancelBtn, resumeBtn)),
    progress, message, h('div', { class: 'status-line' }, status),
    h('div', { class: 'path', title: d.base.dir }, `base: ${d.base.dir}`),
    h('dl', { class: 'facts' },
      fact('Rule', `top-${d.settings.k} left vectors of W0+ΔW, intruder iff max|cos| < ε = ${d.settings.epsilon} (${d.settings.mode})`, 'rule'),
      fact('ESD', `exact spectrum up to 1024 (smaller side), else top-${d.settings.topK}; ‖W‖_F exact`, 'esd')),
    warnBox);
  const heatBox = h('div', { class: 'heatmap-wrap', id: 'model-heatmap-wrap' });
  const heatCard = h('section', { class: 'card', id: 'model-heatmap-card' },
    h('div', { class: 'card-head' }, h('h2', {}, 'Intruders per layer and module'), h('span', { class: 'hint' }, 'cells fill in as modules finish; +n? = possible')),
    heatBox);
  const tbody = h('tbody');
  const head = ['Module', 'layer', 'shape', 'intruders', 'possible', 'min max|cos|', 'alpha W0', 'alpha W0+ΔW', 'log_norm W0+ΔW', 'stable_rank W0+ΔW', 'spectrum', 'time'];
  const numeric = [false, true, false, true, true, true, true, true, true, true, false, true];
  const tableCard = h('section', { class: 'card table-card' },
    h('div', { class: 'card-head' }, h('h2', {}, 'Modules'), h('span', { class: 'hint', id: 'model-count' }, '')),
    h('div', { class: 'table-wrap' }, h('table', { id: 'model-table', class: 'data' },
      h('thead', {}, h('tr', {}, ...head.map((x, i) => h('th', { class: numeric[i] ? 'num' : '', scope: 'col' }, x)))), tbody)));
  const shown = new Set<string>();
  const addRow = (r: ModelModuleRow): void => {
    shown.add(r.name);
    const i = r.intruders;
    const tr = h('tr', { 'data-module': r.name, 'data-count': i.count },
      h('td', { class: 'name' }, r.name), h('td', { class: 'num' }, r.layer === undefined ? '–' : String(r.layer)), h('td', {}, `${r.m}×${r.n}`),
      h('td', { class: 'num', 'data-metric': 'intruders' }, String(i.count)), h('td', { class: 'num' }, String(i.possible)),
      h('td', { class: 'num' }, i.vectors.length ? Math.min(...i.vectors.map((v) => v.maxCos)).toFixed(3) : '–'),
      alphaCell(r.esd.base, 'base'), alphaCell(r.esd.merged, 'merged'),
      h('td', { class: 'num' }, fmt4(r.esd.merged.log_norm)), h('td', { class: 'num' }, fmt4(r.esd.merged.stable_rank)),
      h('td', {}, r.full ? 'full' : `top-${r.esd.merged.num_evals}`), h('td', { class: 'num' }, `${r.ms} ms`));
    tr.title = 'Click for the spectra of this module';
    tr.addEventListener('click', () => void request({ type: 'openSpectra', module: r.name }, undefined, status));
    tbody.append(tr);
  };
  const drawHeatmap = (): void => {
    const mods = d.rows.map((r) => r.intruders);
    const kinds = [...new Set(mods.map((m) => m.kind))].sort((a, b) => kindRank(a) - kindRank(b) || a.localeCompare(b));
    const layers = [...new Set(mods.map((m) => m.layer ?? -1))].sort((a, b) => a - b);
    const maxCount = Math.max(1, ...mods.map((m) => m.count));
    const grid = h('div', { class: `heatmap cols-${Math.max(1, Math.min(kinds.length, 12))}`, id: 'model-heatmap', role: 'grid', 'data-columns': kinds.length });
    grid.append(h('div', { class: 'heat-corner' }, 'layer'), ...kinds.map((k) => h('div', { class: 'heat-col', title: k }, k)));
    for (const l of layers) {
      grid.append(h('div', { class: 'heat-row' }, l < 0 ? '–' : String(l)));
      for (const k of kinds) {
        const ms = mods.filter((x) => (x.layer ?? -1) === l && x.kind === k);
        if (!ms.length) { grid.append(h('div', { class: 'heat-cell empty', 'data-layer': l, 'data-kind': k })); continue; }
        const count = ms.reduce((a, m) => a + m.count, 0), possible = ms.reduce((a, m) => a + m.possible, 0);
        const level = count === 0 ? 0 : Math.max(1, Math.ceil((5 * count) / maxCount));
        const cell = h('div', {
          class: `heat-cell level-${level}`, role: 'gridcell', tabindex: 0, 'data-layer': l, 'data-kind': k, 'data-count': count, 'data-module': ms[0].name,
          title: `${ms.map((m) => m.name).join('\n')}\n${count} intruder${count === 1 ? '' : 's'}${possible ? `, ${possible} possible` : ''}`,
        }, String(count), possible ? h('span', { class: 'possible-mark' }, `+${possible}?`) : undefined);
        cell.addEventListener('click', () => void request({ type: 'openSpectra', module: ms[0].name }, undefined, status));
        grid.append(cell);
      }
    }
    heatBox.replaceChildren(mods.length ? grid : h('p', { class: 'hint' }, 'Waiting for the first module…'));
  };
  const update = (): void => {
    for (const r of d.rows) if (!shown.has(r.name)) addRow(r);
    drawHeatmap();
    const done = d.rows.length;
    bar.max = Math.max(1, d.total);
    bar.value = done;
    const intr = d.rows.reduce((a, r) => a + r.intruders.count, 0);
    progressText.textContent = `${done} / ${d.total || '?'} modules · ${intr} intruders${d.state === 'running' ? ` · ${etaText(d)}` : d.state === 'done' ? ' · done' : d.state === 'cancelled' ? ' · cancelled' : ''}`;
    progress.setAttribute('data-done', String(done));
    progress.setAttribute('data-total', String(d.total));
    progress.setAttribute('data-state', d.state);
    app.setAttribute('data-state', d.state);
    message.textContent = d.state === 'running' ? '' : d.message ?? '';
    message.classList.toggle('error', d.state === 'failed');
    cancelBtn.hidden = d.state !== 'running';
    resumeBtn.hidden = !(d.state === 'cancelled' || d.state === 'failed') || (d.total > 0 && done >= d.total);
    const notes = [...d.warnings, ...d.errors.map((e) => `${e.name}: ${e.message}`)];
    warnBox.replaceChildren(...(notes.length ? [h('div', { class: 'warnings' }, h('ul', {}, ...notes.map((n) => h('li', {}, n))))] : []));
    const countEl = tableCard.querySelector('#model-count');
    if (countEl) countEl.textContent = `${done} of ${d.total || '?'} modules`;
  };
  modelUpdate = update;
  requestAnimationFrame(update);
  update();
  return [header, heatCard, tableCard];
}

// ---------------------------------------------------------------- render

function render(): void {
  if (!current) return;
  for (const c of charts.values()) c.destroy();
  charts.clear();
  rebuild = [];
  modelUpdate = undefined;
  let parts: HTMLElement[];
  switch (current.view) {
    case 'model':
      document.title = `Analyze Model: ${current.data.adapter.name}`;
      parts = renderModel(current.data);
      break;
    case 'intruders':
      document.title = `Intruders: ${current.data.adapter.name}`;
      parts = renderIntruders(current.data);
      break;
    case 'spectra':
      document.title = `Spectra: ${current.data.adapter.name}`;
      parts = renderSpectra(current.data);
      break;
    case 'compare':
      document.title = 'Compare checkpoints';
      parts = renderCompare(current.data);
      break;
  }
  app.replaceChildren(...parts);
  app.setAttribute('data-view', current.view);
  app.setAttribute('data-ready', 'true');
}

channel.post({ type: 'ready' });
