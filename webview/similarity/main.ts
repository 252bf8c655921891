/**
 * Similarity webview (`loraLens.similarity`): an N×N heatmap of adapters with a toggle between
 * |cos| (matrix), signed cos, column-space and row-space overlap; clicking a cell drills down
 * into that pair's modules (bar chart via tree-shaken chart.js + table with principal angles).
 * Heatmap cells carry data-i / data-j / data-value.
 */
import { BarController, BarElement, CategoryScale, Chart, LinearScale, Tooltip } from 'chart.js';
import { onThemeChange, themeColors } from '../common/theme';
import type { ModuleSimilarityView, SimilarityMetric, SimilarityView } from '../../src/shared/similarity';
import { card, connect, fact, fmt, h, header, short, SortTable } from '../peers/ui';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Tooltip);

const METRICS: { key: SimilarityMetric; label: string; hint: string; module: keyof Pick<ModuleSimilarityView, 'matrix' | 'cosine' | 'colOverlap' | 'rowOverlap'> }[] = [
  { key: 'matrix', label: '|cos ΔW|', hint: 'energy-weighted |⟨ΔW_i, ΔW_j⟩_F| / (‖ΔW_i‖‖ΔW_j‖), 1 = same ΔW', module: 'matrix' },
  { key: 'signed', label: 'signed cos', hint: 'energy-weighted signed cosine in [−1, 1]; < 0 = the adapters pull in opposite directions', module: 'cosine' },
  { key: 'columnSpace', label: 'column space', hint: 'mean cos² of the principal angles between the column spaces (output directions)', module: 'colOverlap' },
  { key: 'rowSpace', label: 'row space', hint: 'mean cos² of the principal angles between the row spaces (input directions)', module: 'rowOverlap' },
];

let view: SimilarityView | undefined;
let metric: SimilarityMetric = 'matrix';
let pair: [number, number] = [0, 1];
let moduleName: string | undefined;
let chart: { destroy(): void } | undefined;
const app = document.getElementById('app')!;
const channel = connect((m) => {
  if ((m.type === 'init' || m.type === 'update') && m.view.kind === 'similarity') { view = m.view; render(); }
});

function cellColour(v: number, signed: boolean): string {
  const x = Math.min(1, Math.abs(v));
  const c = signed && v < 0 ? 'var(--vscode-charts-red, #f14c4c)' : 'var(--vscode-charts-blue, #3794ff)';
  return `color-mix(in srgb, ${c} ${Math.round(8 + 82 * x)}%, transparent)`;
}

function heatmap(m: (number | null)[][] = view!.result[metric], id = 'heatmap', shared?: number[][]): HTMLElement {
  const r = view!.result;
  const names = r.adapters.map((a) => a.name);
  const signed = metric === 'signed';
  const rows = names.map((n, i) => h('tr', {}, h('th', { scope: 'row', class: 'hm-label', title: r.adapters[i].path }, n),
    ...names.map((_, j) => {
      const v = m[i][j];
      if (v === null) return h('td', { class: 'hm-cell empty', 'data-i': i, 'data-j': j, 'data-value': '', title: `${names[i]} × ${names[j]}: module missing or ΔW = 0` }, '–');
      const td = h('td', {
        class: `hm-cell${i === j ? ' diag' : ''}${(pair[0] === i && pair[1] === j) || (pair[0] === j && pair[1] === i) ? ' selected' : ''}`,
        'data-i': i, 'data-j': j, 'data-value': String(v), tabindex: i === j ? undefined : 0,
        title: `${names[i]} × ${names[j]}: ${fmt(v)}${shared ? ` (${shared[i][j]} shared modules)` : ''}`,
      }, fmt(v, 2));
      if (i !== j) {
        td.style.background = cellColour(v, signed);
        if (Math.abs(v) > 0.5) td.classList.add('strong');
      }
      if (i !== j) {
        const pick = (): void => { pair = [Math.min(i, j), Math.max(i, j)]; render(); };
        td.addEventListener('click', pick);
        td.addEventListener('keydown', (e) => { if (e.key === 'Enter') pick(); });
      }
      return td;
    })));
  return h('div', { class: 'hm-wrap' }, h('table', { class: 'heatmap', id, 'data-metric': metric },
    h('thead', {}, h('tr', {}, h('th', {}), ...names.map((n) => h('th', { scope: 'col', class: 'hm-col', title: n }, n)))), h('tbody', {}, ...rows)));
}

function toggle(): HTMLElement {
  return h('div', { class: 'segmented', role: 'radiogroup', 'aria-label': 'Similarity measure' }, ...METRICS.map((x) => {
    const b = h('button', { type: 'button', class: x.key === metric ? 'primary' : 'secondary', role: 'radio', 'aria-checked': String(x.key === metric), 'data-metric': x.key, title: x.hint }, x.label);
    b.addEventListener('click', () => { metric = x.key; render(); });
    return b;
  }));
}

interface ModRow { name: string; m: ModuleSimilarityView; value: number | null; cos: number | null; col: number | null; row: number | null; colAngles: number[]; rowAngles: number[] }

function drillDown(): HTMLElement[] {
  const r = view!.result;
  const [i, j] = pair;
  const spec = METRICS.find((x) => x.key === metric)!;
  const rows: ModRow[] = [];
  for (const [name, m] of Object.entries(r.modules)) {
    if (m.norms[i] === null || m.norms[j] === null) continue;
    const p = m.pairs.find((q) => q.i === i && q.j === j);
    rows.push({ name, m, value: m[spec.module][i][j], cos: m.cosine[i][j], col: m.colOverlap[i][j], row: m.rowOverlap[i][j], colAngles: p?.colAnglesDeg ?? [], rowAngles: p?.rowAnglesDeg ?? [] });
  }
  const title = `${r.adapters[i].name} × ${r.adapters[j].name}`;
  const canvas = h('canvas', { id: 'modules-canvas', role: 'img', 'aria-label': `${spec.label} per module` });
  const chartCard = card('modules-chart', `${spec.label} per module: ${title}`, `${rows.length} shared modules · click another heatmap cell for another pair`,
    h('div', { class: 'chart-box', 'data-points': rows.length }, canvas));
  const angles = (a: number[]): string => (a.length ? a.slice(0, 6).map((x) => `${x.toFixed(1)}°`).join(', ') + (a.length > 6 ? ` … (${a.length})` : '') : '–');
  const table = new SortTable<ModRow>('module-similarity', [
    { key: 'name', label: 'module', title: 'Module', value: (x) => x.name, num: false },
    { key: 'shape', label: 'shape', title: 'ΔW shape [out, in]', value: (x) => `${x.m.shape[0]}×${x.m.shape[1]}`, num: false },
    { key: 'normI', label: `‖ΔW‖ ${r.adapters[i].name}`, title: '‖ΔW‖_F of the first adapter', value: (x) => x.m.norms[i] },
    { key: 'normJ', label: `‖ΔW‖ ${r.adapters[j].name}`, title: '‖ΔW‖_F of the second adapter', value: (x) => x.m.norms[j] },
    { key: 'cos', label: 'cos', title: 'signed ⟨ΔW_i, ΔW_j⟩_F / (‖ΔW_i‖‖ΔW_j‖)', value: (x) => x.cos },
    { key: 'col', label: 'col overlap', title: 'mean cos² of the principal angles between column spaces', value: (x) => x.col },
    { key: 'row', label: 'row overlap', title: 'mean cos² of the principal angles between row spaces', value: (x) => x.row },
    { key: 'colAngles', label: 'column angles', title: 'principal angles between the column spaces (ascending)', value: (x) => x.colAngles[0] ?? null, text: (x) => angles(x.colAngles), num: false },
    { key: 'rowAngles', label: 'row angles', title: 'principal angles between the row spaces (ascending)', value: (x) => x.rowAngles[0] ?? null, text: (x) => angles(x.rowAngles), num: false },
  ], (x) => ({ 'data-module': x.name, class: x.name === moduleName ? 'selected' : undefined }), (x) => { moduleName = x.name; render(); });
  table.setRows(rows);
  requestAnimationFrame(() => {
    chart?.destroy();
    const c = themeColors();
    chart = new Chart(canvas, {
      type: 'bar',
      data: { labels: rows.map((x) => short(x.name)), datasets: [{ label: spec.label, data: rows.map((x) => x.value), backgroundColor: rows.map((x) => ((x.value ?? 0) < 0 ? c.series[4] : c.series[0])) }] },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { legend: { display: false }, tooltip: { callbacks: { title: (it) => rows[it[0].dataIndex].name, label: (ctx) => `${spec.label}: ${fmt(ctx.parsed.y)}` } } },
        scales: {
          x: { ticks: { color: c.muted, autoSkip: true, maxRotation: 60, minRotation: 30, font: { size: 10 } }, grid: { display: false } },
          y: { min: metric === 'signed' ? -1 : 0, max: 1, title: { display: true, text: spec.label, color: c.muted }, ticks: { color: c.muted }, grid: { color: c.grid } },
        },
      },
    });
  });
  const out = [chartCard, card('modules-table', `Modules: ${title}`, 'principal angles in degrees; 0° = shared direction · click a module for its adapters × adapters matrix', table.el)];
  const sel = moduleName ? r.modules[moduleName] : undefined;
  if (sel && moduleName) {
    out.push(card('module-matrix', `${moduleName}: adapters × adapters`, `${spec.label} of this module's ΔW (${sel.shape[0]}×${sel.shape[1]}); – = the adapter lacks it`, heatmap(sel[spec.module], 'module-heatmap'),
      h('p', { class: 'hint explain' }, `‖ΔW‖_F: ${r.adapters.map((a, k) => `${a.name} ${fmt(sel.norms[k])}`).join(' · ')}; numerical rank: ${r.adapters.map((a, k) => `${a.name} ${sel.ranks[k] ?? '–'}`).join(' · ')}`)));
  }
  return out;
}

function render(): void {
  if (!view) return;
  const r = view.result;
  const N = r.adapters.length;
  if (pair[1] >= N) pair = [0, 1];
  const spec = METRICS.find((x) => x.key === metric)!;
  let shared = 0;
  for (let i = 0; i < N; i++) for (let j = i + 1; j < N; j++) shared = Math.max(shared, r.shared[i][j]);
  const parts: HTMLElement[] = [
    header(channel, {
      id: 'similarity-header', title: `Similarity of ${N} adapters`, path: r.adapters.map((a) => a.name).join(' · '),
      facts: [fact('adapters', 'Adapters', String(N)), fact('modules', 'Modules compared', String(Object.keys(r.modules).length)), fact('shared', 'Most shared (pair)', String(shared)),
        fact('skipped', 'Skipped', String(r.skipped.length)), fact('time', 'Time', `${view.ms.toFixed(0)} ms`)],
    }),
    card('heatmap-card', 'Adapters × adapters', spec.hint, toggle(), heatmap(r[metric], 'heatmap', r.shared), h('p', { class: 'hint explain' }, `Invariant to how ΔW is split into B and A (B→BG, A→G⁻¹A): computed from r×r products, ΔW never formed. Aggregation: ${r.aggregation}.`)),
    ...drillDown(),
  ];
  if (r.notes.length || r.skipped.length) {
    parts.push(h('section', { class: 'card warnings', id: 'similarity-notes' }, h('div', { class: 'warnings-title' }, 'Notes'),
      h('ul', {}, ...r.notes.map((n) => h('li', {}, n)), ...r.skipped.slice(0, 50).map((s) => h('li', {}, `${s.module}${s.adapter ? ` (${s.adapter})` : ''}: ${s.reason}`)))));
  }
  app.replaceChildren(...parts);
}

onThemeChange(render);
channel.post({ type: 'ready' });
