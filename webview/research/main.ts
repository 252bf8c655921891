/**
 * Research webview (`loraLens.research`), in the report's look: cards, `table.data`, tree-shaken
 * chart.js with VS Code theme colours.
 *   lipschitz  per-layer bound (bar chart), per-head table, worst-case growth with n (log–log chart)
 *   dynamics   base vs LoRA token-particle animation (canvas: play/pause/scrub, Gaussian ellipses),
 *              deviation over time (chart), clustering tables (Koubbi et al.) with the authors' values
 *   vlora      σ of W_{l+1} − W_l per weight kind (charts), increments table, parameter budget of the
 *              chosen model and the chosen adapter's own count
 * Busy and error states stay in the header card (an error is not only a toast). Each chart box exposes
 * `data-series` / `data-points` for the e2e tests.
 */
import {
  BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, LineController, LineElement, LogarithmicScale, PointElement, Tooltip,
  type ChartConfiguration, type ChartDataset,
} from 'chart.js';
import { HostChannel, h } from '../common/vscodeApi';
import { themeColors, onThemeChange, type ThemeColors } from '../common/theme';
import { axisTick, fact, logTick } from '../common/format';
import { solidColor } from '../common/contrast';
import type { DynamicsResult, HostToWebview, KoubbiResult, LipschitzResult, ResearchInputs, ResearchResult, ResearchView, VloraResult, WebviewToHost } from '../../src/shared/research';

Chart.register(LineController, LineElement, PointElement, BarController, BarElement, LinearScale, LogarithmicScale, CategoryScale, Legend, Tooltip);

let view: ResearchView = 'lipschitz';
let target: { base: string; adapter?: string } = { base: '' };
let last: ResearchResult | undefined;
let stopAnim: (() => void) | undefined;
const charts: Chart[] = [];
const app = document.getElementById('app')!;
const status = h('div', { class: 'rs-status', id: 'rs-status', role: 'status' }, 'Loading…');
const errorBox = h('div', { class: 'run-error rs-error', id: 'rs-error', role: 'alert' });
const body = h('div', { class: 'rs-body', id: 'rs-body' });
const channel = new HostChannel<WebviewToHost, HostToWebview>(onMessage);

/** 4 significant digits (exponent outside [1e-3, 1e6)). */
const fmt = (v: number | undefined, digits = 4): string => {
  if (v === undefined || Number.isNaN(v)) return '–';
  if (!Number.isFinite(v)) return '∞';
  return Math.abs(v) >= 1e6 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : String(Number(v.toPrecision(digits)));
};
const short = (p: string): string => p.split(/[\\/]/).filter(Boolean).slice(-2).join('/');

function onMessage(m: HostToWebview): void {
  if (m.type === 'init') {
    view = m.view;
    target = { base: m.base, adapter: m.adapter };
    last = undefined;
    stopAnim?.();
    for (const ch of charts.splice(0)) ch.destroy();
    body.replaceChildren();
    errorBox.textContent = '';
    renderShell();
  } else if (m.type === 'busy') {
    status.textContent = m.message;
    status.className = 'rs-status busy';
    app.dataset.state = 'busy';
  } else if (m.type === 'error') {
    status.textContent = '';
    status.className = 'rs-status';
    errorBox.textContent = m.message === 'cancelled' ? 'Cancelled. Recompute runs it again.' : `Could not compute this view: ${m.message}`;
    app.dataset.state = 'error';
  } else {
    last = m.result;
    status.textContent = '';
    status.className = 'rs-status';
    errorBox.textContent = '';
    app.dataset.state = 'done';
    render();
  }
}

const TITLES: Record<ResearchView, string> = {
  lipschitz: 'Attention Lipschitz bounds', dynamics: 'Token dynamics', vlora: 'Cross-layer increments (VLoRA)',
};
const INTRO: Record<ResearchView, string> = {
  lipschitz: 'How much can one attention head stretch its input? Per head, the spectral norms of the value map and of the query–key form bound the Lipschitz constant of softmax attention (Castin, Ablin, Peyré, "How Smooth Is Attention?", ICML 2024); the adapter changes them through W + s·B·A.',
  dynamics: 'Tokens as particles: repeated self-attention of one head moves the tokens towards clusters (Castin, Ablin, Carrillo, Peyré; Koubbi et al., "The Impact of LoRA on the Emergence of Clusters in Transformers"). Left the base head, right the same head with the adapter.',
  vlora: 'How different are consecutive layers? Vertical LoRA (Fu, arXiv 2406.09315) stores one full layer per compound and only low-rank increments for the others; it pays off when W_{l+1} − W_l has low effective rank.',
};

function renderShell(): void {
  const facts = h('dl', { class: 'facts' },
    fact('base model', h('span', { title: target.base }, short(target.base)), 'base'),
    fact('adapter', target.adapter ? h('span', { title: target.adapter }, short(target.adapter)) : '— (base only)', 'adapter'));
  app.replaceChildren(
    h('header', { class: 'card header-card', id: 'rs-header' },
      h('div', { class: 'title-row' }, h('div', { class: 'title' }, h('h1', {}, TITLES[view]))),
      h('p', { class: 'hint rs-intro' }, INTRO[view]),
      facts, h('div', { class: 'rs-controls-host', id: 'rs-controls' }), status, errorBox),
    body);
}

function numInput(label: string, key: keyof ResearchInputs, value: number, title: string, attrs: Record<string, string | number> = {}): HTMLElement {
  return h('label', { class: 'field', title }, h('span', {}, label), h('input', { type: 'number', value, 'data-key': key, ...attrs }));
}

function controls(fields: HTMLElement[]): void {
  const btn = h('button', { class: 'primary', type: 'button', id: 'rs-recompute' }, 'Recompute');
  const form = h('div', { class: 'rs-controls' }, ...fields, h('div', { class: 'field rs-go' }, h('span', {}, ' '), btn));
  btn.addEventListener('click', () => {
    const inputs: ResearchInputs = {};
    form.querySelectorAll('input[data-key]').forEach((el) => {
      const i = el as HTMLInputElement;
      const v = Number(i.value);
      if (i.value !== '' && Number.isFinite(v)) (inputs as Record<string, number>)[i.dataset.key!] = v;
    });
    errorBox.textContent = '';
    channel.post({ type: 'recompute', inputs });
  });
  document.getElementById('rs-controls')?.replaceChildren(form);
}

function card(id: string, title: string, hint: string, ...children: (Node | string)[]): HTMLElement {
  return h('section', { class: 'card', id }, h('div', { class: 'card-head' }, h('h2', {}, title), hint ? h('span', { class: 'hint' }, hint) : ''), ...children);
}

function dataTable(id: string, head: { label: string; num?: boolean; title?: string }[], rows: { attrs?: Record<string, string>; cells: (string | number)[] }[]): HTMLElement {
  return h('div', { class: 'table-wrap' }, h('table', { class: 'data', id },
    h('thead', {}, h('tr', {}, ...head.map((c) => h('th', { class: c.num ? 'num' : '', title: c.title ?? '' }, c.label)))),
    h('tbody', {}, ...rows.map((r) => h('tr', r.attrs ?? {}, ...r.cells.map((x, i) => h('td', { class: head[i]?.num ? 'num' : 'name' }, typeof x === 'number' ? (Number.isInteger(x) && Math.abs(x) < 1e7 ? x.toLocaleString('en-US') : fmt(x)) : x)))))));
}

/**
 * Series colours: base = charts-blue, adapted = charts-orange, bounds = charts-purple (the theme's own
 * chart colours, made opaque with ≥ 3:1 contrast by solidColor: Dark Modern's orange is 33 % alpha),
 * drawn 2.5 px wide, so "adapted" stands out on dark and light themes alike.
 */
function palette(): ThemeColors & { base: string; adapted: string; bound: string } {
  const c = themeColors();
  const series = c.series.map((x) => solidColor(x));
  return { ...c, series, base: series[0], adapted: series[1], bound: series[3] };
}

type LineSeries = { label: string; points: { x: number; y: number }[]; color: string; dash?: number[]; width?: number; pointRadius?: number };

function lineChart(id: string, series: LineSeries[], o: { logX?: boolean; logY?: boolean; xTitle: string; yTitle: string; height?: number; legend?: boolean; xInt?: boolean }): HTMLElement {
  const c = palette();
  const canvas = h('canvas', { role: 'img', 'aria-label': o.yTitle });
  const box = h('div', { class: 'chart-box rs-chart-box', id, 'data-series': series.length, 'data-points': series.reduce((s, x) => s + x.points.length, 0), 'data-colors': series.map((s) => s.color).join(' ') }, canvas);
  if (o.height) box.style.height = `${o.height}px`; // CSSOM, allowed under the CSP
  const datasets: ChartDataset<'line', { x: number; y: number }[]>[] = series.map((s) => ({
    label: s.label, data: s.points, borderColor: s.color, backgroundColor: s.color, borderWidth: s.width ?? 2.5, borderDash: s.dash,
    pointRadius: s.pointRadius ?? 0, pointHoverRadius: 4, tension: 0,
  }));
  const axis = (log: boolean | undefined, title: string, int = false) => ({
    type: log ? 'logarithmic' as const : 'linear' as const,
    title: { display: true, text: title, color: c.muted, font: { size: 12 } },
    ticks: { color: c.muted, font: { size: 11 }, maxTicksLimit: 8, precision: int ? 0 : undefined, callback: (v: string | number) => (log ? logTick(v) : axisTick(Number(v))) },
    grid: { color: c.grid },
  });
  const cfg: ChartConfiguration<'line', { x: number; y: number }[]> = {
    type: 'line',
    data: { datasets },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false, parsing: false, normalized: true,
      interaction: { mode: 'nearest', intersect: false },
      plugins: {
        legend: { display: o.legend ?? true, position: 'bottom', labels: { color: c.fg, boxWidth: 14, boxHeight: 3, font: { size: 12 } } },
        tooltip: { callbacks: { label: (ctx) => `${ctx.dataset.label}: ${fmt(ctx.parsed.y ?? undefined)}` } },
      },
      scales: { x: axis(o.logX, o.xTitle, o.xInt), y: axis(o.logY, o.yTitle) },
    },
  };
  requestAnimationFrame(() => charts.push(new Chart(canvas, cfg)));
  return box;
}

function barChart(id: string, labels: string[], series: { label: string; values: number[]; color: string }[], yTitle: string): HTMLElement {
  const c = palette();
  const canvas = h('canvas', { role: 'img', 'aria-label': yTitle });
  const box = h('div', { class: 'chart-box rs-chart-box', id, 'data-series': series.length, 'data-points': series.reduce((s, x) => s + x.values.length, 0), 'data-colors': series.map((s) => s.color).join(' ') }, canvas);
  box.style.height = '260px';
  requestAnimationFrame(() => charts.push(new Chart(canvas, {
    type: 'bar',
    data: { labels, datasets: series.map((s) => ({ label: s.label, data: s.values, backgroundColor: s.color, borderColor: s.color, borderWidth: 1, maxBarThickness: 48 })) },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { legend: { position: 'bottom', labels: { color: c.fg, boxWidth: 14, font: { size: 12 } } }, tooltip: { callbacks: { label: (ctx) => `${ctx.dataset.label}: ${fmt(ctx.parsed.y ?? undefined)}` } } },
      scales: {
        x: { ticks: { color: c.muted, font: { size: 11 } }, grid: { display: false } },
        y: { beginAtZero: true, title: { display: true, text: yTitle, color: c.muted }, ticks: { color: c.muted, font: { size: 11 }, callback: (v) => axisTick(Number(v)) }, grid: { color: c.grid } },
      },
    },
  })));
  return box;
}

function renderLipschitz(d: LipschitzResult): void {
  const t = d.table, s = d.scaling, c = palette();
  const adapted = t.rows.some((r) => r.adapted);
  controls([
    numInput('tokens n', 'n', t.n, 'sequence length n in the bound', { min: 1, step: 1 }),
    numInput('radius R', 'R', Number(t.R.toFixed(4)), 'assumed bound on the token norms ‖x_i‖', { min: 0, step: 'any' }),
    numInput('layer (growth chart)', 'layer', s.layer, 'layer of the head in the growth chart', { min: 0, max: d.layout.layers - 1, step: 1 }),
    numInput('head (growth chart)', 'head', s.head, 'head in the growth chart', { min: 0, max: d.layout.heads - 1, step: 1 }),
  ]);
  const headRows = t.rows.map((r) => ({
    attrs: { 'data-layer': String(r.layer), 'data-head': String(r.head) },
    cells: [r.layer, r.head, r.normV, r.normA, r.bound, ...(adapted ? [r.adapted?.normV ?? '–', r.adapted?.normA ?? '–', r.adapted?.bound ?? '–', r.adapted ? `${r.adapted.bound >= r.bound ? '+' : ''}${(100 * (r.adapted.bound / r.bound - 1)).toFixed(2)} %` : '–'] : [])] as (string | number)[],
  }));
  const growth: LineSeries[] = [
    { label: `base (slope ${s.base.slope.toFixed(2)})`, points: s.base.points.map((p) => ({ x: p.n, y: p.lipschitz })), color: c.base, pointRadius: 3 },
    ...(s.adapted ? [{ label: `adapted (slope ${s.adapted.slope.toFixed(2)})`, points: s.adapted.points.map((p) => ({ x: p.n, y: p.lipschitz })), color: c.adapted, pointRadius: 3, dash: [6, 3] }] : []),
    { label: 'upper bound (base)', points: s.base.points.map((p) => ({ x: p.n, y: p.radiusBound })), color: c.bound, dash: [2, 3], width: 2 },
  ];
  body.replaceChildren(
    h('div', { class: 'warnings rs-assumption', id: 'rs-assumption' }, h('strong', {}, 'An upper bound, not a measured constant: '),
      `it assumes every token has norm ‖x_i‖ ≤ R for n = ${t.n} tokens; ${t.radiusNote}. ${adapted ? `Adapted = W + s·B·A on ${t.adaptedModules.length} attention module(s) of the adapter.` : 'No adapter: base only.'}`),
    h('div', { class: 'charts rs-charts' },
      card('rs-layers-card', 'Bound per layer', 'sum of the head bounds',
        barChart('rs-layers-chart', t.layers.map((l) => `layer ${l.layer}`), [
          { label: 'base', values: t.layers.map((l) => l.bound), color: c.base },
          ...(adapted ? [{ label: 'adapted', values: t.layers.map((l) => l.adaptedBound ?? l.bound), color: c.adapted }] : []),
        ], 'Σ bound')),
      card('rs-growth-card', 'Worst-case growth with sequence length', `layer ${s.layer}, head ${s.head}, R = ${fmt(s.R, 3)}; theory: slope ½ on log–log axes`,
        lineChart('rs-growth-chart', growth, { logX: true, logY: true, xTitle: 'tokens n', yTitle: 'local Lipschitz constant', height: 260 }))),
    card('rs-heads-card', 'Per head', 'spectral norms of the value map V_h and of the query–key form K_hᵀQ_h/√d_head',
      dataTable('rs-heads', [
        { label: 'layer', num: true }, { label: 'head', num: true },
        { label: '‖V‖₂', num: true }, { label: '‖KᵀQ‖₂/√d', num: true }, { label: 'bound', num: true },
        ...(adapted ? [{ label: '‖V‖₂ adapted', num: true }, { label: '‖KᵀQ‖₂/√d adapted', num: true }, { label: 'bound adapted', num: true }, { label: 'change', num: true }] : []),
      ], headRows)),
  );
}

function ellipse(ctx: CanvasRenderingContext2D, cx: number, cy: number, cov: number[], k: number, sx: (v: number) => number): void {
  const [a, b, c] = cov;
  const tr = a + c, det = a * c - b * b, disc = Math.sqrt(Math.max(0, tr * tr / 4 - det));
  const l1 = tr / 2 + disc, l2 = Math.max(0, tr / 2 - disc);
  const ang = Math.atan2(l1 - a, b || 1e-12);
  ctx.beginPath();
  ctx.ellipse(cx, cy, Math.max(0.5, sx(k * Math.sqrt(l1))), Math.max(0.5, sx(k * Math.sqrt(l2))), b === 0 ? (a >= c ? 0 : Math.PI / 2) : ang, 0, 2 * Math.PI);
  ctx.stroke();
}

function canvas(W: number, H: number): { el: HTMLCanvasElement; ctx: CanvasRenderingContext2D } {
  const el = h('canvas', { class: 'rs-dyn', width: W * devicePixelRatio, height: H * devicePixelRatio });
  el.style.width = `${W}px`; el.style.height = `${H}px`; // CSSOM, allowed under the CSP
  const ctx = el.getContext('2d')!;
  ctx.scale(devicePixelRatio, devicePixelRatio);
  return { el, ctx };
}

function renderDynamics(d: DynamicsResult, k: KoubbiResult): void {
  stopAnim?.();
  controls([
    numInput('layer', 'layer', d.layer, 'layer of the head', { min: 0, max: d.layout.layers - 1, step: 1 }),
    numInput('head', 'head', d.head, 'attention head', { min: 0, max: d.layout.heads - 1, step: 1 }),
    numInput('tokens', 'tokens', d.n, 'number of token particles', { min: 2, max: 256, step: 1 }),
    numInput('seed', 'seed', d.seed, 'random initial tokens', { min: 0, step: 1 }),
  ]);
  const W = 320, H = 320;
  const cb = canvas(W, H), cl = canvas(W, H);
  const frames = d.times.length;
  const extentOf = (pts: number[][]): number => Math.max(1e-9, ...pts.map((p) => Math.max(Math.abs(p[0]), Math.abs(p[1])))) * 1.1;
  const globalExt = extentOf([...d.base.frames, ...d.lora.frames].flat());
  // "Follow" rescales every frame to its own extent (shared by both views), so a collapsing cloud stays readable.
  let follow = true;
  let ext = globalExt;
  const sx = (v: number): number => (v / ext) * (W / 2);
  const loraCaption = d.adapted.length ? `with the adapter (${d.adapted.map((m) => m.split('.').pop()).join(', ')})` : 'with the adapter (it changes no attention module of this layer)';
  const holder = h('div', { class: 'rs-anim', 'data-frame': '0', 'data-frames': String(frames) },
    h('figure', {}, cb.el, h('figcaption', {}, 'base')), h('figure', {}, cl.el, h('figcaption', {}, loraCaption)));
  const scrub = h('input', { type: 'range', min: 0, max: frames - 1, value: 0, class: 'rs-scrub', 'aria-label': 'time' });
  const play = h('button', { type: 'button', class: 'secondary rs-play' }, 'Pause');
  const label = h('span', { class: 'rs-time' }, '');
  let frame = 0, playing = true, raf = 0, lastT = 0;
  const draw = (): void => {
    const t = palette();
    ext = follow ? extentOf([...d.base.frames[frame], ...d.lora.frames[frame]]) : globalExt;
    for (const [c, run, col] of [[cb, d.base, t.base], [cl, d.lora, t.adapted]] as const) {
      const ctx = c.ctx;
      ctx.clearRect(0, 0, W, H);
      ctx.strokeStyle = t.grid; ctx.lineWidth = 1; ctx.strokeRect(0.5, 0.5, W - 1, H - 1);
      const g = run.gaussian[Math.min(frame, run.gaussian.length - 1)];
      if (g && g.cov.every(Number.isFinite)) { ctx.strokeStyle = t.fg; ctx.globalAlpha = 0.6; ctx.setLineDash([4, 3]); ellipse(ctx, W / 2 + sx(g.mean[0]), H / 2 - sx(g.mean[1]), g.cov, 2, sx); ctx.setLineDash([]); ctx.globalAlpha = 1; }
      ctx.fillStyle = col;
      for (const p of run.frames[frame]) { ctx.beginPath(); ctx.arc(W / 2 + sx(p[0]), H / 2 - sx(p[1]), 3.5, 0, 2 * Math.PI); ctx.fill(); }
    }
    holder.setAttribute('data-frame', String(frame));
    scrub.value = String(frame);
    label.textContent = `t = ${d.times[frame].toFixed(2)} · largest distance base ↔ adapted ${fmt(d.deviation[frame], 3)}${follow ? ` · zoom ×${fmt(globalExt / ext, 2)}` : ''}`;
  };
  const tick = (now: number): void => {
    if (playing && now - lastT > 60) { frame = (frame + 1) % frames; lastT = now; draw(); }
    raf = requestAnimationFrame(tick);
  };
  play.addEventListener('click', () => { playing = !playing; play.textContent = playing ? 'Pause' : 'Play'; });
  const followBox = h('input', { type: 'checkbox', class: 'rs-follow', checked: 'checked', id: 'rs-follow' }) as HTMLInputElement;
  followBox.addEventListener('change', () => { follow = followBox.checked; draw(); });
  scrub.addEventListener('input', () => { frame = Number(scrub.value); playing = false; play.textContent = 'Play'; draw(); });
  stopAnim = () => cancelAnimationFrame(raf);
  const never = (v: number): string => (v === 0 ? 'never' : v.toFixed(1));
  const c = palette();
  body.replaceChildren(
    h('div', { class: 'rs-dyn-row' },
      card('rs-anim-card', 'Token particles', `${d.n} tokens ~ N(0, I), seed ${d.seed}; layer ${d.layer}, head ${d.head}; shared 2-D projection; dashed: 2σ ellipse of the Gaussian approximation`,
        h('div', { class: 'rs-player' }, play, scrub, h('label', { class: 'rs-follow-label', for: 'rs-follow', title: 'rescale every frame so a collapsing cloud stays readable' }, followBox, ' follow the cloud')), label, holder),
      card('rs-dev-card', 'How far the adapter moves the tokens', 'largest distance between a token\'s base and adapted trajectory',
        lineChart('rs-dev-chart', [{ label: 'max distance', points: d.times.map((t, i) => ({ x: t, y: d.deviation[i] })), color: c.adapted }], { xTitle: 'time t', yTitle: 'distance', height: 220, legend: false }))),
    h('p', { class: 'hint rs-eq' }, `Each token moves as ẋ_i = V Σ_j softmax_j(⟨Q x_i, K x_j⟩/√d_head) x_j, with Q, K of the head and V = O_h·V_h scaled to unit size (the same scale for base and adapted); Euler steps of dt = ${d.dt}.`),
    card('rs-koubbi-card', 'When do clusters form and split? (Koubbi et al.)', '20 tokens in 2-D, V_ε = diag(1, 1 − ε), δ = 0.1; "reference" = the authors\' published code',
      h('p', { class: 'hint' }, `Clusters of the V = I run: ${k.clusters.map((p) => `(${p.map((x) => x.toFixed(2)).join(', ')})`).join(', ')}; reference ${k.reference.clusters.map((p) => `(${p.map((x) => x.toFixed(2)).join(', ')})`).join(', ')}.`),
      dataTable('rs-koubbi', [{ label: 'ε', num: true }, { label: 'time to cluster', num: true }, { label: 'reference', num: true }, { label: 'time to split', num: true }, { label: 'reference', num: true }],
        k.rows.map((r, i) => {
          const ref = k.reference.bifurcation[i];
          return { cells: [r.eps, never(r.timeCluster), ref ? never(ref.timeCluster) : '–', never(r.timeBifurcation), ref ? never(ref.timeBifurcation) : '–'] };
        })),
      h('h3', {}, 'Divergence from the V = I run'),
      dataTable('rs-divergence', [{ label: 'ε', num: true }, { label: 'first t with distance > δ', num: true }, { label: 'reference', num: true }, { label: 'largest distance', num: true }],
        k.divergence.map((r, i) => ({ cells: [r.eps, r.time === null ? 'never' : r.time.toFixed(1), k.reference.divergence[i]?.time.toFixed(1) ?? '–', r.maxDeviation] })))),
  );
  draw();
  raf = requestAnimationFrame(tick);
}

function renderVlora(d: VloraResult): void {
  const r = d.report, c = palette();
  controls([numInput('VLoRA rank r', 'rank', r.rank, 'rank of each increment', { min: 1, step: 1 })]);
  const kindLabel = (k: string): string => k.replace(/^model\./, '').replace(/\.weight$/, '');
  const kindCards = r.kinds.map((k, ki) => card(`rs-kind-${ki}`, kindLabel(k.kind), `[${k.rows}×${k.cols}], ${k.layers.length} layers`,
    lineChart(`rs-kind-chart-${ki}`, k.consecutive.map((inc, i) => ({
      label: `layer ${inc.to} − ${inc.from}`, points: inc.sigma.map((y, j) => ({ x: j + 1, y })), color: c.series[i % c.series.length], width: 2,
    })), { logY: true, xTitle: 'index i', yTitle: 'σ_i', height: 220, xInt: true })));
  const incRows = r.kinds.flatMap((k) => k.consecutive.map((inc) => ({
    attrs: { 'data-kind': k.kind },
    cells: [kindLabel(k.kind), `${inc.from} → ${inc.to}`, inc.fro, inc.relative, `${inc.rank90.rank}${inc.rank90.lowerBound ? '+' : ''}`, `${inc.rank99.rank}${inc.rank99.lowerBound ? '+' : ''}`, `${(100 * inc.tailAtRank).toFixed(1)} %`] as (string | number)[],
  })));
  const sv = d.savings;
  const saveRows = sv.rows.map((x) => ({
    attrs: { 'data-size': String(x.size) },
    cells: [x.size === 1 ? `${x.compounds} × 1 (every layer full)` : `${x.compounds} × ${x.size}`, x.rank, x.params, `${(100 * x.saving).toFixed(1)} %`] as (string | number)[],
  }));
  body.replaceChildren(
    h('p', { class: 'hint rs-eq' }, `Singular values of W_{l+1} − W_l per weight kind of ${short(target.base)}. Effective rank = how many directions hold 90 % / 99 % of ‖W_{l+1} − W_l‖²_F; "missed at r" = energy outside the top ${r.rank} directions.`),
    h('div', { class: 'charts rs-charts rs-kinds' }, ...kindCards),
    card('rs-inc-card', 'Increments between consecutive layers', '', dataTable('rs-vlora', [
      { label: 'weight' }, { label: 'layers' }, { label: '‖ΔW‖_F', num: true }, { label: '‖ΔW‖ / ‖W‖', num: true },
      { label: 'rank 90 %', num: true, title: '+ = at least (only the top singular values were computed)' }, { label: 'rank 99 %', num: true }, { label: `missed at r = ${r.rank}`, num: true },
    ], incRows)),
    card('rs-budget-card', `Parameter budget of ${short(target.base)}`, `stacked weights of its ${sv.layers} layers: ${sv.full.toLocaleString('en-US')} parameters in full`,
      dataTable('rs-savings', [{ label: 'compounds × layers each' }, { label: 'rank', num: true }, { label: 'parameters', num: true }, { label: 'saving', num: true }], saveRows),
      d.adapter
        ? h('p', { class: 'hint', id: 'rs-adapter-count' }, `For comparison, the adapter ${short(d.adapter.path)} adds ${d.adapter.params.toLocaleString('en-US')} LoRA parameters (${d.adapter.modules} modules, rank ${d.adapter.ranks.join('/')}) on top of the full base.`)
        : h('p', { class: 'hint' }, 'No adapter chosen.')),
  );
}

function render(): void {
  for (const ch of charts.splice(0)) ch.destroy();
  if (!last) return;
  if (last.view === 'lipschitz') renderLipschitz(last.data);
  else if (last.view === 'dynamics') renderDynamics(last.data, last.koubbi);
  else renderVlora(last.data);
}

onThemeChange(render);
window.addEventListener('error', (e) => channel.post({ type: 'log', level: 'error', message: String(e.message) }));
channel.post({ type: 'ready' });
