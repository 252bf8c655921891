/**
 * Report webview: header card, singular-value spectrum and per-layer metric charts (chart.js,
 * tree-shaken), sortable module table with data-module / data-metric / data-value attributes.
 */
import {
  CategoryScale, Chart, Legend, LinearScale, LineController, LineElement, LogarithmicScale, PointElement, Tooltip,
  type ChartDataset,
} from 'chart.js';
import { fmt4, moduleTypeLabel, reviveReport, type AdapterReport, type ModuleReport } from '../../src/shared/report';
import { h, HostChannel } from '../common/vscodeApi';
import { onThemeChange, themeColors } from '../common/theme';
import type { HostToWebview, WebviewToHost } from '../../src/shared/reportView';
import { axisTick, fact, logTickAdaptive } from '../common/format';
import { showLogButton } from '../common/banner';

Chart.register(LineController, LineElement, PointElement, LinearScale, LogarithmicScale, CategoryScale, Legend, Tooltip);

type NumKey = 'rank' | 'scale' | 'spectral' | 'fro' | 'stableRank' | 'effectiveRank' | 'kappaA' | 'kappaB' | 'balanceGap';
interface Column { key: NumKey | 'name' | 'method'; label: string; title: string; numeric: boolean }

const COLUMNS: Column[] = [
  { key: 'name', label: 'Module', title: 'Full module name', numeric: false },
  { key: 'rank', label: 'r', title: 'LoRA rank', numeric: true },
  { key: 'scale', label: 'scale', title: 'Effective scale s in ΔW = s·B·A', numeric: true },
  { key: 'spectral', label: 'σ₁', title: 'Largest singular value ‖ΔW‖₂', numeric: true },
  { key: 'fro', label: '‖ΔW‖_F', title: 'Frobenius norm of ΔW', numeric: true },
  { key: 'stableRank', label: 'stable rank', title: '‖ΔW‖_F² / ‖ΔW‖₂²', numeric: true },
  { key: 'effectiveRank', label: 'eff. rank', title: 'Effective rank exp(H(σ/Σσ))', numeric: true },
  { key: 'kappaA', label: 'κ(A)', title: 'Condition number of A', numeric: true },
  { key: 'kappaB', label: 'κ(B)', title: 'Condition number of B', numeric: true },
  { key: 'balanceGap', label: 'balance gap', title: '‖BᵀB − AAᵀ‖_F / (‖A‖_F² + ‖B‖_F²), 0 = balanced', numeric: true },
  { key: 'method', label: 'method', title: 'How the R factors were obtained', numeric: false },
];

const METRICS: { key: NumKey; label: string; log: boolean }[] = [
  { key: 'spectral', label: 'σ₁ (spectral norm)', log: false },
  { key: 'fro', label: '‖ΔW‖_F (Frobenius norm)', log: false },
  { key: 'stableRank', label: 'Stable rank', log: false },
  { key: 'effectiveRank', label: 'Effective rank', log: false },
  { key: 'kappaA', label: 'κ(A)', log: true },
  { key: 'kappaB', label: 'κ(B)', log: true },
  { key: 'balanceGap', label: 'Balance gap', log: false },
];

interface State { spectrum?: string; metric?: NumKey; logY?: boolean; sortKey?: string; sortDir?: 1 | -1; filter?: string }

let report: AdapterReport | undefined;
let spectrumChart: { destroy(): void } | undefined;
let layersChart: { destroy(): void } | undefined;
const channel = new HostChannel<WebviewToHost, HostToWebview, State>((m) => {
  switch (m.type) {
    case 'init':
      report = reviveReport(m.report);
      render();
      break;
    case 'reply':
      break;
  }
});
const state: State = { metric: 'spectral', sortDir: 1, ...channel.api.getState() };
const save = (): void => channel.api.setState(state);


const app = document.getElementById('app')!;

/** `model.layers.0.self_attn.q_proj` in group `layers.0` → `layers.0 · self_attn.q_proj`. */
function shortName(m: ModuleReport): string {
  if (m.layerLabel) return `${m.layerLabel} · ${m.kind}`;
  const i = m.name.indexOf(`${m.group}.`);
  return i >= 0 ? `${m.group} · ${m.name.slice(i + m.group.length + 1)}` : m.name;
}

/** Module type for legends: the path inside its layer (`self_attn.q_proj`; SD: `attn1.to_k`). */
function kindPath(m: ModuleReport): string {
  if (m.layerLabel) return m.kind;
  const i = m.name.indexOf(`${m.group}.`);
  return i >= 0 ? m.name.slice(i + m.group.length + 1) : m.kind;
}

/** x-axis label of a layer: the SD block label (`down.1.attn0`) when the report has one. */
function layerName(r: AdapterReport, l: number): string {
  return r.modules.find((m) => m.layer === l && m.layerLabel)?.layerLabel ?? String(l);
}

function scaleRuleText(r: AdapterReport): string {
  const { rank, alpha, useRslora, hasRankPattern, hasAlphaPattern } = r.adapter;
  let s = '';
  if (rank !== undefined && alpha !== undefined) {
    s = useRslora ? `rsLoRA α/√r = ${alpha}/√${rank} = ${axisTick(alpha / Math.sqrt(rank))}` : `α/r = ${alpha}/${rank} = ${axisTick(alpha / rank)}`;
  } else if (r.modules[0]) s = r.modules[0].scaleSource;
  const pats = [hasRankPattern && 'rank_pattern', hasAlphaPattern && 'alpha_pattern'].filter(Boolean);
  if (pats.length) s += ` + ${pats.join(', ')}`;
  const scales = [...new Set(r.modules.map((m) => m.scale))];
  if (scales.length > 1) s += ` (s ∈ [${axisTick(Math.min(...scales))}, ${axisTick(Math.max(...scales))}])`;
  return s || '–';
}


function badge(text: string, cls = ''): HTMLElement {
  return h('span', { class: `badge ${cls}`.trim() }, text);
}

function renderHeader(r: AdapterReport): HTMLElement {
  const a = r.adapter;
  const flags: HTMLElement[] = [badge(a.format.toUpperCase(), 'accent')];
  if (a.useRslora) flags.push(badge('rsLoRA'));
  if (a.useDora) flags.push(badge('DoRA'));
  if (a.fanInFanOut) flags.push(badge('fan_in_fan_out'));
  if (a.hasRankPattern) flags.push(badge('rank_pattern'));
  if (a.hasAlphaPattern) flags.push(badge('alpha_pattern'));
  const status = h('span', { id: 'export-status', class: 'export-status', role: 'status' });
  const exportBtn = (format: 'json' | 'csv', label: string, cls: string): HTMLButtonElement => {
    const b = h('button', { id: `export-${format}`, class: cls, type: 'button', title: `Save the report as ${format.toUpperCase()}` }, label);
    b.addEventListener('click', async () => {
      b.disabled = true;
      status.textContent = '';
      status.classList.remove('error');
      try {
        const reply = await channel.request<Extract<HostToWebview, { type: 'reply' }>>({ type: 'export', format });
        status.textContent = reply.message ?? '';
      } catch (e) {
        status.textContent = (e as Error).message;
        status.classList.add('error');
      } finally {
        b.disabled = false;
      }
    });
    return b;
  };
  const errors = r.modules.filter((m) => m.error).length;
  const t = r.timings;
  const header = h('header', { class: 'card header-card', id: 'report-header' },
    h('div', { class: 'title-row' },
      h('div', { class: 'title' }, h('h1', { id: 'adapter-name' }, a.name), ...flags),
      h('div', { class: 'actions' }, status, exportBtn('json', 'Export JSON', 'primary'), exportBtn('csv', 'Export CSV', 'secondary'))),
    h('div', { class: 'path', title: a.path }, a.path),
    h('dl', { class: 'facts' },
      fact('Rank', String(a.rank ?? r.modules[0]?.rank ?? '–'), 'rank'),
      fact('Alpha', String(a.alpha ?? '–'), 'alpha'),
      fact('Scale rule', scaleRuleText(r), 'scale'),
      fact('Modules', `${r.modules.length}${errors ? ` (${errors} failed)` : ''}`, 'modules'),
      fact('Targets', a.targetModules.join(', ') || '–', 'targets'),
      fact('Base model', a.baseModel ?? '–', 'base'),
      fact('Engine', `ORT: ${r.engine.provider}${r.engine.fallbackReason ? ` (fallback: ${r.engine.fallbackReason})` : ''}`, 'engine'),
      fact('Timings', `read ${t.readMs.toFixed(1)} ms · compute ${t.computeMs.toFixed(1)} ms · total ${t.totalMs.toFixed(1)} ms`, 'timings'),
    ),
  );
  if (r.warnings.length) {
    header.append(h('div', { class: 'warnings', id: 'report-warnings' },
      h('div', { class: 'warnings-title' }, `⚠ ${r.warnings.length} warning${r.warnings.length === 1 ? '' : 's'}`, showLogButton()),
      h('ul', {}, ...r.warnings.map((w) => h('li', {}, w)))));
  }
  return header;
}

// ---------------------------------------------------------------- charts

function spectrumOptions(r: AdapterReport): { value: string; label: string }[] {
  const opts = [{ value: 'all', label: `All modules (${r.modules.length})` }];
  const kinds = [...new Set(r.modules.map(kindPath))];
  for (const k of kinds) opts.push({ value: `kind:${k}`, label: `All ${k}` });
  const groups = [...new Set(r.modules.map((m) => m.group))];
  for (const g of groups) opts.push({ value: `group:${g}`, label: `All in ${g}` });
  for (const m of r.modules) opts.push({ value: `module:${m.name}`, label: shortName(m) });
  return opts;
}

function selectedModules(r: AdapterReport, sel: string): ModuleReport[] {
  const ok = r.modules.filter((m) => !m.error && m.sigma.length);
  if (sel.startsWith('kind:')) return ok.filter((m) => kindPath(m) === sel.slice(5));
  if (sel.startsWith('group:')) return ok.filter((m) => m.group === sel.slice(6));
  if (sel.startsWith('module:')) return ok.filter((m) => m.name === sel.slice(7));
  return ok;
}



function colorFor(i: number): string {
  const s = themeColors().series;
  return s[i % s.length];
}

function buildSpectrum(canvas: HTMLCanvasElement, r: AdapterReport, sel: string): void {
  spectrumChart?.destroy();
  const c = themeColors();
  const mods = selectedModules(r, sel);
  const kinds = [...new Set(r.modules.map(kindPath))];
  // Rank-1 (or rank-2) adapters: one or two points per module, so lines alone would draw nothing.
  const maxLen = Math.max(1, ...mods.map((m) => m.sigma.length));
  const dots = maxLen <= 2;
  const datasets: ChartDataset<'line', { x: number; y: number }[]>[] = mods.map((m) => {
    const ki = kinds.indexOf(kindPath(m));
    const color = colorFor(mods.length <= 8 ? mods.indexOf(m) : ki);
    return {
      label: shortName(m),
      data: m.sigma.map((y, i) => ({ x: i + 1, y })).filter((p) => p.y > 0),
      borderColor: color,
      backgroundColor: color,
      borderWidth: 1.5,
      pointRadius: dots ? 3 : mods.length > 30 ? 0 : 2,
      showLine: !dots,
      borderDash: (m.layer ?? 0) % 2 === 1 && mods.length > 8 ? [5, 3] : undefined,
      tension: 0,
    };
  });
  // For tests and screen readers: what the chart shows.
  canvas.dataset.points = String(datasets.reduce((n, d) => n + d.data.length, 0));
  spectrumChart = new Chart<'line', { x: number; y: number }[]>(canvas, {
    type: 'line',
    data: { datasets },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false, parsing: false,
      interaction: { mode: 'nearest', intersect: false },
      plugins: {
        legend: { display: datasets.length <= 24, position: 'bottom', labels: { color: c.fg, boxWidth: 12, boxHeight: 2, font: { size: 11 } } },
        tooltip: { callbacks: { label: (ctx) => `${ctx.dataset.label}: σ${ctx.parsed.x} = ${fmt4(ctx.parsed.y ?? undefined)}` } },
      },
      scales: {
        x: {
          type: 'linear', min: dots ? 0 : 1, max: dots ? maxLen + 1 : maxLen,
          title: { display: true, text: 'index i', color: c.muted }, ticks: { color: c.muted, precision: 0, stepSize: 1 }, grid: { color: c.grid },
        },
        y: { type: 'logarithmic', title: { display: true, text: 'σᵢ(ΔW)', color: c.muted }, ticks: { color: c.muted, callback: logTickAdaptive }, grid: { color: c.grid } },
      },
    },
  });
}

function buildLayers(canvas: HTMLCanvasElement, r: AdapterReport, metric: NumKey, logY: boolean): void {
  layersChart?.destroy();
  const c = themeColors();
  const ok = r.modules.filter((m) => !m.error);
  const hasLayers = ok.some((m) => m.layer !== undefined);
  const layers = hasLayers ? [...new Set(ok.filter((m) => m.layer !== undefined).map((m) => m.layer!))].sort((a, b) => a - b) : [];
  const kinds = [...new Set(r.modules.map(kindPath))];
  const datasets: ChartDataset<'line', (number | null)[]>[] = kinds.map((k, i) => {
    const ms = ok.filter((m) => kindPath(m) === k);
    const data = hasLayers
      ? layers.map((l) => {
        const m = ms.find((x) => x.layer === l);
        const v = m ? m[metric] : undefined;
        return v === undefined || !Number.isFinite(v) || (logY && v <= 0) ? null : v;
      })
      : ms.map((m) => (Number.isFinite(m[metric]) ? m[metric] : null));
    return { label: k, data, borderColor: colorFor(i), backgroundColor: colorFor(i), borderWidth: 1.75, pointRadius: 3, spanGaps: true, tension: 0 };
  });
  const labels = hasLayers ? layers.map((l) => layerName(r, l)) : Array.from({ length: Math.max(0, ...datasets.map((d) => d.data.length)) }, (_, i) => String(i));
  const blocks = ok.some((m) => m.layerLabel);
  const metricLabel = METRICS.find((x) => x.key === metric)?.label ?? metric;
  canvas.dataset.xLabels = JSON.stringify(labels);
  canvas.dataset.series = JSON.stringify(datasets.map((d) => d.label));
  layersChart = new Chart<'line', (number | null)[], string>(canvas, {
    type: 'line',
    data: { labels, datasets },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false,
      interaction: { mode: 'index', intersect: false },
      plugins: {
        legend: { position: 'bottom', labels: { color: c.fg, boxWidth: 12, boxHeight: 2, font: { size: 11 } } },
        tooltip: { callbacks: { title: (items) => `${blocks ? 'block' : 'layer'} ${items[0]?.label ?? ''}`, label: (ctx) => `${ctx.dataset.label}: ${fmt4(ctx.parsed.y ?? undefined)}` } },
      },
      scales: {
        x: { type: 'category', title: { display: true, text: blocks ? 'UNet / text-encoder block' : hasLayers ? 'layer' : 'module', color: c.muted }, ticks: { color: c.muted, autoSkip: true, maxRotation: 60 }, grid: { color: c.grid } },
        y: {
          type: logY ? 'logarithmic' : 'linear', beginAtZero: !logY, grace: logY ? undefined : '5%',
          title: { display: true, text: metricLabel, color: c.muted },
          ticks: { color: c.muted, callback: logY ? logTickAdaptive : (v) => axisTick(Number(v)) }, grid: { color: c.grid },
        },
      },
    },
  });
}

function renderCharts(r: AdapterReport): HTMLElement {
  const opts = spectrumOptions(r);
  const defaultSel = r.modules.length <= 40 ? 'all' : opts[1]?.value ?? 'all';
  if (!state.spectrum || !opts.some((o) => o.value === state.spectrum)) state.spectrum = defaultSel;
  const specSelect = h('select', { id: 'spectrum-select', 'aria-label': 'Modules shown in the spectrum' },
    ...opts.map((o) => h('option', { value: o.value, selected: o.value === state.spectrum }, o.label)));
  const specCanvas = h('canvas', { id: 'spectrum-chart', 'aria-label': 'Singular-value spectrum per module', role: 'img' });
  specSelect.addEventListener('change', () => {
    state.spectrum = specSelect.value;
    save();
    buildSpectrum(specCanvas, r, specSelect.value);
  });

  const metricSelect = h('select', { id: 'metric-select', 'aria-label': 'Metric across layers' },
    ...METRICS.map((m) => h('option', { value: m.key, selected: m.key === state.metric }, m.label)));
  const logBox = h('input', { type: 'checkbox', id: 'metric-log', checked: !!state.logY });
  const layersCanvas = h('canvas', { id: 'layers-chart', 'aria-label': 'Metrics across layers', role: 'img' });
  const rebuildLayers = (): void => buildLayers(layersCanvas, r, state.metric ?? 'spectral', !!state.logY);
  metricSelect.addEventListener('change', () => {
    state.metric = metricSelect.value as NumKey;
    state.logY = METRICS.find((m) => m.key === state.metric)?.log ?? false;
    logBox.checked = state.logY;
    save();
    rebuildLayers();
  });
  logBox.addEventListener('change', () => {
    state.logY = logBox.checked;
    save();
    rebuildLayers();
  });

  const section = h('section', { class: 'charts' },
    h('div', { class: 'card chart-card', id: 'spectrum-card' },
      h('div', { class: 'card-head' }, h('h2', {}, 'Singular-value spectrum'), h('span', { class: 'hint' }, 'σᵢ of s·B·A, log scale'), h('div', { class: 'spacer' }), specSelect),
      h('div', { class: 'chart-box' }, specCanvas)),
    h('div', { class: 'card chart-card', id: 'layers-card' },
      h('div', { class: 'card-head' }, h('h2', {}, 'Metrics across layers'), h('div', { class: 'spacer' }), metricSelect,
        h('label', { class: 'check', for: 'metric-log' }, logBox, 'log')),
      h('div', { class: 'chart-box' }, layersCanvas)),
  );
  requestAnimationFrame(() => {
    buildSpectrum(specCanvas, r, state.spectrum ?? 'all');
    rebuildLayers();
  });
  onThemeChangeOnce(() => {
    buildSpectrum(specCanvas, r, state.spectrum ?? 'all');
    rebuildLayers();
  });
  highlightModule = (name: string) => {
    const v = `module:${name}`;
    if ([...specSelect.options].some((o) => o.value === v)) {
      specSelect.value = v;
      specSelect.dispatchEvent(new Event('change'));
    }
  };
  return section;
}

let themeHook: (() => void) | undefined;
let themeObserved = false;
function onThemeChangeOnce(fn: () => void): void {
  themeHook = fn;
  if (!themeObserved) {
    themeObserved = true;
    onThemeChange(() => themeHook?.());
  }
}
let highlightModule: (name: string) => void = () => undefined;

// ---------------------------------------------------------------- table

function cellValue(m: ModuleReport, key: Column['key']): number | string {
  return m[key] as number | string;
}

function renderTable(r: AdapterReport): HTMLElement {
  const tbody = h('tbody');
  const count = h('span', { class: 'hint', id: 'module-count' });
  const filter = h('input', { type: 'search', id: 'module-filter', placeholder: 'Filter modules', value: state.filter ?? '', 'aria-label': 'Filter modules' });
  const ths = COLUMNS.map((c) => {
    const th = h('th', { 'data-key': c.key, class: c.numeric ? 'num' : '', title: `${c.title} (click to sort)`, scope: 'col', tabindex: 0 }, c.label);
    const sort = (): void => {
      state.sortDir = state.sortKey === c.key ? ((-(state.sortDir ?? 1)) as 1 | -1) : c.numeric ? -1 : 1;
      state.sortKey = c.key;
      save();
      fill();
    };
    th.addEventListener('click', sort);
    th.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sort(); } });
    return th;
  });
  const fill = (): void => {
    const q = (state.filter ?? '').toLowerCase();
    let rows = r.modules.filter((m) => !q || m.name.toLowerCase().includes(q));
    if (state.sortKey) {
      const key = state.sortKey as Column['key'];
      const dir = state.sortDir ?? 1;
      rows = [...rows].sort((a, b) => {
        const va = cellValue(a, key);
        const vb = cellValue(b, key);
        if (typeof va === 'number' && typeof vb === 'number') {
          const na = Number.isNaN(va) ? -Infinity : va;
          const nb = Number.isNaN(vb) ? -Infinity : vb;
          return (na - nb || 0) * dir;
        }
        return String(va).localeCompare(String(vb), 'en', { numeric: true }) * dir;
      });
    }
    for (const th of ths) {
      const k = th.getAttribute('data-key');
      th.setAttribute('aria-sort', k === state.sortKey ? (state.sortDir === -1 ? 'descending' : 'ascending') : 'none');
    }
    tbody.replaceChildren(...rows.map((m) => {
      const tr = h('tr', { 'data-module': m.name, class: m.error ? 'row-error' : '', title: m.error ?? `${m.name} — ${m.outFeatures}×${m.inFeatures}, ${m.dtype}, ${m.scaleSource}` });
      for (const c of COLUMNS) {
        if (c.key === 'name') {
          // SD adapters: "down.0.attn0 · attn1_to_q" (the full kohya / diffusers name is the row's tooltip).
          tr.append(h('td', { class: 'name', 'data-metric': 'name', 'data-value': m.name }, m.layerLabel ? shortName(m) : m.name, m.dora ? h('span', { class: 'badge small' }, 'DoRA') : undefined,
            m.structure ? h('span', { class: 'badge small type', 'data-type': m.structure.type, title: m.structure.method }, moduleTypeLabel(m)) : undefined,
            m.error ? h('span', { class: 'badge small error' }, 'error') : undefined));
        } else if (c.key === 'method') {
          tr.append(h('td', { 'data-metric': 'method', 'data-value': m.method }, m.structure ? moduleTypeLabel(m) : m.method));
        } else {
          const v = m[c.key];
          // Factor metrics do not exist for LoHa / LoKr / VeRA rows (NaN in the report): an em dash.
          const text = c.key === 'rank' ? String(v) : Number.isNaN(v) ? '—' : fmt4(v);
          tr.append(h('td', {
            class: 'num', 'data-metric': c.key, 'data-value': String(v),
            title: Number.isNaN(v) && m.structure ? `not defined for ${moduleTypeLabel(m)} (ΔW is not s·B·A)` : undefined,
          }, text));
        }
      }
      tr.addEventListener('click', () => {
        tbody.querySelector('tr.selected')?.classList.remove('selected');
        tr.classList.add('selected');
        highlightModule(m.name);
      });
      return tr;
    }));
    count.textContent = rows.length === r.modules.length ? `${rows.length} modules` : `${rows.length} of ${r.modules.length} modules`;
  };
  filter.addEventListener('input', () => {
    state.filter = filter.value;
    save();
    fill();
  });
  fill();
  return h('section', { class: 'card table-card' },
    h('div', { class: 'card-head' }, h('h2', {}, 'Modules'), count, h('div', { class: 'spacer' }), filter),
    h('div', { class: 'table-wrap' }, h('table', { id: 'module-table', class: 'data' }, h('thead', {}, h('tr', {}, ...ths)), tbody)));
}

function render(): void {
  if (!report) return;
  const r = report;
  document.title = `LoRA Lens: ${r.adapter.name}`;
  app.replaceChildren(renderHeader(r), renderCharts(r), renderTable(r));
  app.setAttribute('data-ready', 'true');
}

channel.post({ type: 'ready' });
