/**
 * Research webview: Lipschitz table + √n chart, token-dynamics animation (canvas, play/pause/scrub, base vs LoRA,
 * Gaussian ODE ellipses) + Koubbi table, VLoRA increments chart + savings. Drawing uses canvas from this bundled
 * script only (strict CSP, no inline styles).
 */
import { HostChannel, h } from '../common/vscodeApi';
import { themeColors, onThemeChange } from '../common/theme';
import type { DynamicsResult, HostToWebview, KoubbiResult, LipschitzResult, ResearchInputs, ResearchResult, ResearchView, VloraResult, WebviewToHost } from '../../src/shared/research';

let view: ResearchView = 'lipschitz';
let last: ResearchResult | undefined;
let stopAnim: (() => void) | undefined;
const app = document.getElementById('app')!;
const status = h('div', { class: 'rs-status', role: 'status' }, 'Loading…');
const body = h('div', { class: 'rs-body' });
const channel = new HostChannel<WebviewToHost, HostToWebview>(onMessage);
const fmt = (v: number, d = 4): string => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : v.toFixed(d));

function onMessage(m: HostToWebview): void {
  if (m.type === 'init') {
    view = m.view;
    app.replaceChildren(h('header', { class: 'rs-head' }, h('h1', {}, title()), h('div', { class: 'rs-src' }, `base ${m.base}${m.adapter ? ` · adapter ${m.adapter}` : ''}`)), status, body);
  } else if (m.type === 'busy') { status.textContent = m.message; status.className = 'rs-status busy'; }
  else if (m.type === 'error') { status.textContent = `Error: ${m.message}`; status.className = 'rs-status error'; }
  else { last = m.result; status.textContent = ''; status.className = 'rs-status'; render(); }
}

function title(): string {
  return view === 'lipschitz' ? 'Attention Lipschitz bounds' : view === 'dynamics' ? 'Token dynamics' : 'Cross-layer increments (VLoRA)';
}

function numInput(label: string, key: keyof ResearchInputs, value: number, attrs: Record<string, string | number> = {}): HTMLElement {
  const input = h('input', { type: 'number', value, 'data-key': key, ...attrs });
  return h('label', { class: 'rs-input' }, label, input);
}

function controls(fields: HTMLElement[]): HTMLElement {
  const btn = h('button', { class: 'rs-btn', type: 'button' }, 'Recompute');
  const form = h('div', { class: 'rs-controls' }, ...fields, btn);
  btn.addEventListener('click', () => {
    const inputs: ResearchInputs = {};
    form.querySelectorAll('input[data-key]').forEach((el) => {
      const i = el as HTMLInputElement;
      const v = Number(i.value);
      if (Number.isFinite(v)) (inputs as Record<string, number>)[i.dataset.key!] = v;
    });
    channel.post({ type: 'recompute', inputs });
  });
  return form;
}

function canvas(cls: string, w: number, hgt: number): { el: HTMLCanvasElement; ctx: CanvasRenderingContext2D; w: number; h: number } {
  const el = h('canvas', { class: cls, width: w * devicePixelRatio, height: hgt * devicePixelRatio, 'data-w': w });
  el.style.width = `${w}px`; el.style.height = `${hgt}px`; // CSSOM, allowed under the CSP
  const ctx = el.getContext('2d')!;
  ctx.scale(devicePixelRatio, devicePixelRatio);
  return { el, ctx, w, h: hgt };
}

/** Minimal line chart on canvas (log-log optional). */
function lineChart(series: { label: string; xs: number[]; ys: number[]; dash?: boolean }[], o: { logX?: boolean; logY?: boolean; xLabel: string; yLabel: string; w?: number; h?: number }): HTMLCanvasElement {
  const c = canvas('rs-chart', o.w ?? 520, o.h ?? 280);
  const t = themeColors();
  const { ctx } = c;
  const tx = (v: number): number => (o.logX ? Math.log10(v) : v), ty = (v: number): number => (o.logY ? Math.log10(Math.max(v, 1e-300)) : v);
  const all = series.flatMap((s) => s.xs.map((x, i) => [tx(x), ty(s.ys[i])])).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (!all.length) return c.el;
  let [x0, x1, y0, y1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0])), Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (x1 === x0) x1 = x0 + 1; if (y1 === y0) y1 = y0 + 1;
  const L = 56, R = 12, T = 12, B = 40, W = c.w - L - R, H = c.h - T - B;
  const px = (x: number): number => L + ((x - x0) / (x1 - x0)) * W, py = (y: number): number => T + H - ((y - y0) / (y1 - y0)) * H;
  ctx.strokeStyle = t.grid; ctx.fillStyle = t.muted; ctx.font = '11px sans-serif'; ctx.lineWidth = 1;
  ctx.strokeRect(L, T, W, H);
  for (let k = 0; k <= 4; k++) {
    const xv = x0 + ((x1 - x0) * k) / 4, yv = y0 + ((y1 - y0) * k) / 4;
    ctx.fillText(o.logX ? fmt(10 ** xv, 0) : fmt(xv, 1), px(xv) - 10, T + H + 14);
    ctx.fillText(o.logY ? fmt(10 ** yv, 2) : fmt(yv, 2), 4, py(yv) + 4);
  }
  ctx.fillText(o.xLabel, L + W / 2 - 20, c.h - 6);
  ctx.save(); ctx.translate(12, T + H / 2 + 30); ctx.rotate(-Math.PI / 2); ctx.fillText(o.yLabel, 0, 0); ctx.restore();
  series.forEach((s, si) => {
    ctx.strokeStyle = t.series[si % t.series.length]; ctx.fillStyle = ctx.strokeStyle; ctx.lineWidth = 2;
    ctx.setLineDash(s.dash ? [5, 4] : []);
    ctx.beginPath();
    s.xs.forEach((x, i) => { const X = px(tx(x)), Y = py(ty(s.ys[i])); if (i) ctx.lineTo(X, Y); else ctx.moveTo(X, Y); });
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillRect(L + 8, T + 8 + si * 14, 10, 3);
    ctx.fillText(s.label, L + 22, T + 12 + si * 14);
  });
  return c.el;
}

function table(head: string[], rows: (string | number)[][], cls = 'rs-table'): HTMLTableElement {
  return h('table', { class: cls }, h('thead', {}, h('tr', {}, ...head.map((x) => h('th', {}, x)))),
    h('tbody', {}, ...rows.map((r) => h('tr', { 'data-layer': String(r[0]) }, ...r.map((x) => h('td', {}, typeof x === 'number' ? (Number.isInteger(x) && Math.abs(x) < 1e6 ? String(x) : fmt(x)) : x))))));
}

function renderLipschitz(d: LipschitzResult): void {
  const t = d.table, s = d.scaling;
  const rows = t.rows.map((r) => [r.layer, r.head, r.normV, r.normA, r.bound, r.adapted?.normV ?? '—', r.adapted?.normA ?? '—', r.adapted?.bound ?? '—', r.adapted ? `${(100 * (r.adapted.bound / r.bound - 1)).toFixed(2)}%` : '—'] as (string | number)[]);
  const series = [
    { label: `Lip(n) base, slope ${s.base.slope.toFixed(3)}`, xs: s.base.points.map((p) => p.n), ys: s.base.points.map((p) => p.lipschitz) },
    ...(s.adapted ? [{ label: `Lip(n) adapted, slope ${s.adapted.slope.toFixed(3)}`, xs: s.adapted.points.map((p) => p.n), ys: s.adapted.points.map((p) => p.lipschitz) }] : []),
    { label: 'radius bound (base)', xs: s.base.points.map((p) => p.n), ys: s.base.points.map((p) => p.radiusBound), dash: true },
  ];
  body.replaceChildren(
    controls([numInput('n tokens', 'n', t.n, { min: 1, step: 1 }), numInput('radius R', 'R', Number(t.R.toFixed(4)), { min: 0, step: 'any' }),
      numInput('layer', 'layer', s.layer, { min: 0, max: d.layout.layers - 1 }), numInput('head', 'head', s.head, { min: 0, max: d.layout.heads - 1 })]),
    h('p', { class: 'rs-note' }, h('strong', {}, `Upper bound under the assumption ‖x_i‖ ≤ R`), ` for n = ${t.n} tokens; ${t.radiusNote}. Not a measured constant. Adapted = W + s·B·A on ${t.adaptedModules.length} q/k/v module(s).`),
    h('section', {}, h('h2', {}, 'Per layer'), table(['layer', 'Σ_h bound base', 'Σ_h bound adapted'], t.layers.map((l) => [l.layer, l.bound, l.adaptedBound ?? '—']), 'rs-table rs-layers')),
    h('section', {}, h('h2', {}, 'Per head'), table(['layer', 'head', '‖V‖₂', '‖KᵀQ‖₂/√d', 'bound', '‖V‖₂ adapted', '‖KᵀQ‖₂/√d adapted', 'bound adapted', 'Δ bound'], rows, 'rs-table rs-heads')),
    h('section', {}, h('h2', {}, `Adversarial √n growth (layer ${s.layer}, head ${s.head}, R = ${fmt(s.R, 3)})`),
      h('p', { class: 'rs-note' }, `Fitted log–log slope of Lip(n) on the closed-form adversarial inputs: ${s.base.slope.toFixed(3)} (theory ≈ 0.5).`),
      lineChart(series, { logX: true, logY: true, xLabel: 'n (tokens)', yLabel: 'Lipschitz' })),
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

function renderDynamics(d: DynamicsResult, k: KoubbiResult): void {
  stopAnim?.();
  const W = 300, H = 300;
  const cb = canvas('rs-dyn', W, H), cl = canvas('rs-dyn', W, H);
  const frames = d.times.length;
  const extentOf = (pts: number[][]): number => Math.max(1e-9, ...pts.map((p) => Math.max(Math.abs(p[0]), Math.abs(p[1])))) * 1.1;
  const globalExt = extentOf([...d.base.frames, ...d.lora.frames].flat());
  // "Follow" rescales every frame to its own extent (shared by both views), so a collapsing cloud
  // stays readable; the zoom factor relative to the fixed scale is shown next to the time.
  let follow = true;
  let ext = globalExt;
  const sx = (v: number): number => (v / ext) * (W / 2);
  const holder = h('div', { class: 'rs-anim', 'data-frame': '0', 'data-frames': String(frames) },
    h('figure', {}, cb.el, h('figcaption', {}, 'base')), h('figure', {}, cl.el, h('figcaption', {}, `LoRA (${d.adapted.length ? d.adapted.map((m) => m.split('.').pop()).join(', ') : 'no q/k/v/o module in this layer'})`)));
  const scrub = h('input', { type: 'range', min: 0, max: frames - 1, value: 0, class: 'rs-scrub', 'aria-label': 'time' });
  const play = h('button', { type: 'button', class: 'rs-btn rs-play' }, 'Pause');
  const label = h('span', { class: 'rs-time' }, '');
  let frame = 0, playing = true, raf = 0, lastT = 0;
  const draw = (): void => {
    const t = themeColors();
    ext = follow ? extentOf([...d.base.frames[frame], ...d.lora.frames[frame]]) : globalExt;
    for (const [c, run, col] of [[cb, d.base, t.series[0]], [cl, d.lora, t.series[1]]] as const) {
      const ctx = c.ctx;
      ctx.clearRect(0, 0, W, H);
      ctx.strokeStyle = t.grid; ctx.strokeRect(0.5, 0.5, W - 1, H - 1);
      const g = run.gaussian[Math.min(frame, run.gaussian.length - 1)];
      if (g && g.cov.every(Number.isFinite)) { ctx.strokeStyle = t.muted; ctx.setLineDash([4, 3]); ellipse(ctx, W / 2 + sx(g.mean[0]), H / 2 - sx(g.mean[1]), g.cov, 2, sx); ctx.setLineDash([]); }
      ctx.fillStyle = col;
      for (const p of run.frames[frame]) { ctx.beginPath(); ctx.arc(W / 2 + sx(p[0]), H / 2 - sx(p[1]), 3, 0, 2 * Math.PI); ctx.fill(); }
    }
    holder.setAttribute('data-frame', String(frame));
    scrub.value = String(frame);
    label.textContent = `t = ${d.times[frame].toFixed(2)} · max‖x−x̃‖ = ${fmt(d.deviation[frame], 4)}${follow ? ` · zoom ×${fmt(globalExt / ext, 3)}` : ''}`;
  };
  const tick = (now: number): void => {
    if (playing && now - lastT > 60) { frame = (frame + 1) % frames; lastT = now; draw(); }
    raf = requestAnimationFrame(tick);
  };
  play.addEventListener('click', () => { playing = !playing; play.textContent = playing ? 'Pause' : 'Play'; });
  const followBox = h('input', { type: 'checkbox', class: 'rs-follow', checked: 'checked', 'aria-label': 'follow the cloud (rescale every frame)' }) as HTMLInputElement;
  followBox.addEventListener('change', () => { follow = followBox.checked; draw(); });
  scrub.addEventListener('input', () => { frame = Number(scrub.value); playing = false; play.textContent = 'Play'; draw(); });
  stopAnim = () => cancelAnimationFrame(raf);
  const kRows = k.rows.map((r, i) => {
    const ref = k.reference.bifurcation[i];
    const never = (v: number): string => (v === 0 ? 'never' : v.toFixed(1));
    return [r.eps, never(r.timeCluster), ref ? never(ref.timeCluster) : '—', never(r.timeBifurcation), ref ? never(ref.timeBifurcation) : '—'] as (string | number)[];
  });
  const dRows = k.divergence.map((r, i) => [r.eps, r.time === null ? 'never' : r.time.toFixed(1), k.reference.divergence[i]?.time.toFixed(1) ?? '—', r.maxDeviation] as (string | number)[]);
  body.replaceChildren(
    controls([numInput('layer', 'layer', d.layer, { min: 0, max: d.layout.layers - 1 }), numInput('head', 'head', d.head, { min: 0, max: d.layout.heads - 1 }), numInput('tokens n', 'tokens', d.n, { min: 2, max: 256 }), numInput('seed', 'seed', d.seed)]),
    h('p', { class: 'rs-note' }, `ẋ_i = V Σ_j softmax_j(⟨Qx_i, Kx_j⟩/√d_head) x_j with Q, K of layer ${d.layer} head ${d.head} and V = O_h·V_h (normalised), ${d.n} tokens ~ N(0, I), seed ${d.seed}, Euler dt = ${d.dt}. Shared 2-D PCA projection of the initial cloud; dashed: 2σ ellipse of the Gaussian covariance ODE.`),
    h('div', { class: 'rs-player' }, play, scrub, h('label', { class: 'rs-follow-label' }, followBox, ' follow'), label), holder,
    h('section', {}, h('h2', {}, 'Koubbi bifurcation (V_ε = diag(1, 1 − ε), 20 tokens in 2-D, δ = 0.1)'),
      h('p', { class: 'rs-note' }, `Clusters of the V = I run: computed ${JSON.stringify(k.clusters)}; reference ${JSON.stringify(k.reference.clusters)} (papers.md §5.2).`),
      table(['ε', 'time cluster', 'reference', 'time bifurcation', 'reference'], kRows, 'rs-table rs-koubbi'),
      h('h3', {}, 'Divergence from the V = I run (δ = 0.1)'),
      table(['ε', 'first t with max‖z−z̃‖ > δ', 'reference', 'max deviation'], dRows, 'rs-table')),
  );
  draw();
  raf = requestAnimationFrame(tick);
}

function renderVlora(d: VloraResult): void {
  const r = d.report;
  const charts = r.kinds.map((k) => h('figure', { class: 'rs-kind' }, lineChart(k.consecutive.map((inc) => ({ label: `W${inc.to} − W${inc.from}`, xs: inc.sigma.map((_, i) => i + 1), ys: inc.sigma })), { logY: true, xLabel: 'index i', yLabel: 'σ_i', w: 360, h: 200 }), h('figcaption', {}, `${k.kind} [${k.rows}×${k.cols}]`)));
  const rows = r.kinds.flatMap((k) => k.consecutive.map((inc) => [k.kind, `${inc.from}→${inc.to}`, inc.fro, inc.relative, `${inc.rank90.rank}${inc.rank90.lowerBound ? '+' : ''}`, `${inc.rank99.rank}${inc.rank99.lowerBound ? '+' : ''}`, inc.tailAtRank] as (string | number)[]));
  body.replaceChildren(
    controls([numInput('VLoRA rank r', 'rank', r.rank, { min: 1 })]),
    h('p', { class: 'rs-note' }, 'Singular values of consecutive-layer increments W_{l+1} − W_l of the base model per weight kind; effective ranks at 90 % / 99 % of ‖ΔW‖²_F; tail = energy outside the top-r directions.'),
    h('div', { class: 'rs-grid' }, ...charts),
    table(['kind', 'layers', '‖ΔW‖_F', '‖ΔW‖/‖W‖', 'rank 90%', 'rank 99%', `tail @ r=${r.rank}`], rows, 'rs-table rs-vlora'),
    h('h2', {}, 'Parameter savings'),
    table(['model', 'compounds × size', 'rank', 'parameters', 'saving'], [
      ['this base (stacked weights)', `1 × ${r.kinds[0]?.layers.length ?? 0}`, r.rank, String(r.vloraParams), `${(100 * r.saving).toFixed(1)}% of ${r.fullParams}`],
      ...d.vit.rows.map((v) => [d.vit.name, `${v.compounds} × ${v.size}`, v.rank, String(v.params), `${(100 * (1 - v.params / d.vit.full)).toFixed(1)}% of ${d.vit.full}`] as (string | number)[]),
    ], 'rs-table'),
  );
}

function render(): void {
  if (!last) return;
  if (last.view === 'lipschitz') renderLipschitz(last.data);
  else if (last.view === 'dynamics') renderDynamics(last.data, last.koubbi);
  else renderVlora(last.data);
}

onThemeChange(render);
window.addEventListener('error', (e) => channel.post({ type: 'log', level: 'error', message: String(e.message) }));
channel.post({ type: 'ready' });
