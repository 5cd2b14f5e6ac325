// gmmscape landscape explorer: plain JavaScript on canvas 2D, no libraries, no network.
// The data (particles, PCA inverse, decoder weights) is the JSON block of this page,
// written by gmmscape/explorer.py, which documents how a 2D point maps to a latent vector.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("explorer-data").textContent);
  const $ = (id) => document.getElementById(id);

  // ---------- typed arrays from base64 ----------
  function bytes(b64) {
    const text = atob(b64);
    const out = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
    return out.buffer;
  }
  const f32 = (b64) => new Float32Array(bytes(b64));
  const i32 = (b64) => new Int32Array(bytes(b64));

  // ---------- the decoder: dense layers, then GmmSpace.to_gmm ----------
  function makeDecoder(spec) {
    const layers = spec.layers.map((l) => ({
      nIn: l.inputs, nOut: l.outputs, act: l.activation, W: f32(l.kernel), b: f32(l.bias),
      y: new Float64Array(l.outputs),
    }));
    const free = i32(spec.free);
    const neutral = Float64Array.from(f32(spec.neutral));
    const n = spec.n_gaussians;
    function forward(z) {
      let x = Float64Array.from(z);
      for (const l of layers) {
        const y = l.y, W = l.W, nIn = l.nIn;
        for (let j = 0, off = 0; j < l.nOut; j++, off += nIn) {
          let sum = l.b[j];
          for (let i = 0; i < nIn; i++) sum += x[i] * W[off + i];
          y[j] = l.act === "relu" ? (sum > 0 ? sum : 0) : l.act === "sigmoid" ? 1 / (1 + Math.exp(-sum)) : sum;
        }
        x = y;
      }
      return x;
    }
    // latent (d) -> GMM, Float64Array (N * 5): x y z amplitude sigma (box fractions)
    function decode(z) {
      if (z.length !== spec.latent_dim) throw new Error("latent: expected " + spec.latent_dim + " numbers");
      const s = forward(z);
      const g = Float64Array.from(neutral);
      for (let k = 0; k < free.length; k++) {
        const at = free[k], c = at % 5;
        if (c < 3) g[at] = s[k] - 0.5;
        else if (c === 3) g[at] = s[k] / spec.amp_scale;
        else g[at] = neutral[at] * (0.5 + s[k]);
      }
      if (spec.pin_mean) {
        let sum = 0;
        for (let j = 0; j < n; j++) sum += g[j * 5 + 3];
        const factor = spec.neutral_mean_amplitude / (sum / n);
        for (let j = 0; j < n; j++) g[j * 5 + 3] *= factor;
      }
      return g;
    }
    return { decode, neutral, n };
  }

  // ---------- particles and views ----------
  const N_P = DATA.n_particles, D = DATA.columns.length;
  const INDEX = i32(DATA.index), CLUSTER = i32(DATA.cluster), LATENT = f32(DATA.latent);
  const VIEWS = {};
  for (const name of Object.keys(DATA.views)) VIEWS[name] = f32(DATA.views[name]);
  const DEC = makeDecoder(DATA.decoder);
  // Symmetry copies of one particle share its index: rows per index, to link them.
  const SIBLINGS = (function () {
    if (!DATA.copies) return null;
    const rows = new Map();
    for (let i = 0; i < N_P; i++) {
      if (!rows.has(INDEX[i])) rows.set(INDEX[i], []);
      rows.get(INDEX[i]).push(i);
    }
    return rows;
  })();
  const BOX_A = DATA.decoder.box * DATA.decoder.apix; // box edge in Angstrom

  // A fixed random subset is drawn above draw_limit; every particle stays selectable.
  const DRAWN = (function () {
    const all = new Int32Array(N_P);
    for (let i = 0; i < N_P; i++) all[i] = i;
    if (N_P <= DATA.draw_limit) return all;
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296);
    for (let i = 0; i < DATA.draw_limit; i++) {
      const j = i + Math.floor(rand() * (N_P - i));
      const t = all[i]; all[i] = all[j]; all[j] = t;
    }
    return all.slice(0, DATA.draw_limit).sort();
  })();

  // ---------- colours ----------
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
    [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];
  function lut(t) {
    t = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
    const i = Math.min(VIRIDIS.length - 2, Math.floor(t)), f = t - i;
    return VIRIDIS[i].map((a, k) => Math.round(a + f * (VIRIDIS[i + 1][k] - a)));
  }
  const hexRgb = (h) => [1, 3, 5].map((k) => parseInt(h.slice(k, k + 2), 16));
  const classRgb = (k) => (k < 0 ? [190, 190, 190] : hexRgb(PALETTE[k % PALETTE.length]));
  const packRgb = (c) => (255 << 24) | (c[2] << 16) | (c[1] << 8) | c[0]; // ImageData, little-endian
  const css = (c, a) => "rgba(" + c[0] + "," + c[1] + "," + c[2] + "," + (a === undefined ? 1 : a) + ")";

  // ---------- state ----------
  const S = {
    view: Object.keys(VIEWS)[0], colour: "class", tool: "explore",
    cam: null, // landscape camera: centre cx, cy (data) and scale (css px per unit)
    cursor: null, pinned: false, // data point of the marker
    selection: null, // {label, rows: Int32Array (positions), cls}
    quiver: [], // picked data points (0..2), each {x, y, z}
    lasso: null, box: null, drag: null,
    traj: 0, u: 0, playing: false, lastTick: 0,
    model: null, modelLabel: "", modelLatent: null, // the decoded GMM on show
    shade: "amplitude", showNeutral: true,
    rot: { yaw: 0.5, pitch: -0.35 }, zoom: 1.0, rotDrag: null,
    stats: { decodeMs: [], drawMs: 0, firstPaintMs: null },
  };

  // ---------- latent <-> landscape ----------
  function pcaLatent(x, y) {
    const m = DATA.pca.mean, c = DATA.pca.components, z = new Float64Array(D);
    for (let k = 0; k < D; k++) z[k] = m[k] + x * c[0][k] + y * c[1][k];
    return z;
  }
  const GRIDS = {};
  function grid(view) { // uniform grid over the view for nearest-particle queries
    if (GRIDS[view]) return GRIDS[view];
    const P = VIEWS[view];
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < N_P; i++) {
      x0 = Math.min(x0, P[2 * i]); x1 = Math.max(x1, P[2 * i]);
      y0 = Math.min(y0, P[2 * i + 1]); y1 = Math.max(y1, P[2 * i + 1]);
    }
    const g = Math.max(1, Math.ceil(Math.sqrt(N_P / 4)));
    const cell = Math.max(x1 - x0, y1 - y0, 1e-12) / g;
    const cellOf = (x, y) => {
      const cx = Math.min(g - 1, Math.max(0, Math.floor((x - x0) / cell)));
      const cy = Math.min(g - 1, Math.max(0, Math.floor((y - y0) / cell)));
      return [cx, cy];
    };
    const start = new Int32Array(g * g + 1), items = new Int32Array(N_P);
    const where = new Int32Array(N_P);
    for (let i = 0; i < N_P; i++) {
      const [cx, cy] = cellOf(P[2 * i], P[2 * i + 1]);
      where[i] = cy * g + cx; start[where[i] + 1]++;
    }
    for (let c = 0; c < g * g; c++) start[c + 1] += start[c];
    const fill = start.slice(0, g * g);
    for (let i = 0; i < N_P; i++) items[fill[where[i]]++] = i;
    GRIDS[view] = { g, cell, cellOf, start, items, extent: Math.max(x1 - x0, y1 - y0, 1e-12) };
    return GRIDS[view];
  }
  function nearest(view, x, y, k) { // k nearest particles (positions, distances) in a view
    const G = grid(view), P = VIEWS[view];
    const [qx, qy] = G.cellOf(x, y);
    const best = []; // sorted [dist, i]
    k = Math.min(k, N_P);
    for (let r = 0; r <= G.g; r++) {
      for (let cy = qy - r; cy <= qy + r; cy++) {
        if (cy < 0 || cy >= G.g) continue;
        const ring = cy === qy - r || cy === qy + r;
        for (let cx = qx - r; cx <= qx + r; cx += ring ? 1 : 2 * r || 1) {
          if (cx < 0 || cx >= G.g) continue;
          const c = cy * G.g + cx;
          for (let p = G.start[c]; p < G.start[c + 1]; p++) {
            const i = G.items[p], d = Math.hypot(P[2 * i] - x, P[2 * i + 1] - y);
            if (best.length < k || d < best[best.length - 1][0]) {
              let at = best.length;
              while (at > 0 && best[at - 1][0] > d) at--;
              best.splice(at, 0, [d, i]);
              if (best.length > k) best.pop();
            }
          }
        }
      }
      if (best.length === k && best[k - 1][0] <= r * G.cell) break;
    }
    return best;
  }
  function latentAt(x, y, view) {
    view = view || S.view;
    if (view === "pca") return pcaLatent(x, y);
    const eps = 1e-6 * grid(view).extent, z = new Float64Array(D);
    let wsum = 0;
    for (const [d, i] of nearest(view, x, y, DATA.nearest)) {
      const w = 1 / (d + eps);
      wsum += w;
      for (let k = 0; k < D; k++) z[k] += w * LATENT[i * D + k];
    }
    for (let k = 0; k < D; k++) z[k] /= wsum;
    return z;
  }
  function meanLatent(rows) {
    const z = new Float64Array(D);
    for (const i of rows) for (let k = 0; k < D; k++) z[k] += LATENT[i * D + k];
    for (let k = 0; k < D; k++) z[k] /= Math.max(1, rows.length);
    return z;
  }

  // ---------- landscape drawing ----------
  const pointsCanvas = $("points"), overlay = $("overlay"), modelCanvas = $("model");
  const dpr = () => window.devicePixelRatio || 1;
  function size(canvas) {
    const r = canvas.getBoundingClientRect(), k = dpr();
    const w = Math.max(1, Math.round(r.width * k)), h = Math.max(1, Math.round(r.height * k));
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    return { w: r.width, h: r.height };
  }
  function fitCamera() {
    const P = VIEWS[S.view];
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < N_P; i++) {
      x0 = Math.min(x0, P[2 * i]); x1 = Math.max(x1, P[2 * i]);
      y0 = Math.min(y0, P[2 * i + 1]); y1 = Math.max(y1, P[2 * i + 1]);
    }
    const r = overlay.getBoundingClientRect();
    const span = Math.min(r.width / Math.max(x1 - x0, 1e-9), r.height / Math.max(y1 - y0, 1e-9));
    S.cam = { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2, scale: 0.9 * span };
  }
  function toScreen(x, y) {
    const r = overlay.getBoundingClientRect();
    return [(x - S.cam.cx) * S.cam.scale + r.width / 2, r.height / 2 - (y - S.cam.cy) * S.cam.scale];
  }
  function toData(px, py) { // css pixels relative to the landscape's top-left corner
    const r = overlay.getBoundingClientRect();
    return [(px - r.width / 2) / S.cam.scale + S.cam.cx, S.cam.cy - (py - r.height / 2) / S.cam.scale];
  }
  function colourValues() { // per particle colour (packed) for the current colouring
    const out = new Uint32Array(N_P);
    if (S.colour === "class") {
      const cache = {};
      for (let i = 0; i < N_P; i++) {
        const k = CLUSTER[i];
        out[i] = cache[k] !== undefined ? cache[k] : (cache[k] = packRgb(classRgb(k)));
      }
      return { packed: out, legend: null };
    }
    const [kind, k] = S.colour.split(":");
    const val = new Float64Array(N_P);
    for (let i = 0; i < N_P; i++) {
      val[i] = kind === "z" ? LATENT[i * D + +k] : VIEWS[kind][2 * i + +k];
    }
    const sorted = Float64Array.from(val).sort();
    const lo = sorted[Math.floor(0.02 * (N_P - 1))], hi = sorted[Math.ceil(0.98 * (N_P - 1))];
    const levels = [];
    for (let t = 0; t < 64; t++) levels.push(packRgb(lut(t / 63)));
    for (let i = 0; i < N_P; i++) {
      const t = hi > lo ? (val[i] - lo) / (hi - lo) : 0.5;
      out[i] = levels[Math.round(63 * Math.min(1, Math.max(0, t)))];
    }
    return { packed: out, legend: [lo, hi] };
  }
  let COLOURS = null;
  function drawPoints() {
    const t0 = performance.now();
    size(pointsCanvas);
    const W = pointsCanvas.width, H = pointsCanvas.height, k = dpr();
    const ctx = pointsCanvas.getContext("2d");
    const img = ctx.createImageData(W, H), buf = new Uint32Array(img.data.buffer);
    buf.fill(0xffffffff);
    const P = VIEWS[S.view], r = overlay.getBoundingClientRect();
    const dot = Math.max(2, Math.round(2 * k));
    const sel = S.selection ? new Uint8Array(N_P) : null;
    if (sel) for (const i of S.selection.rows) sel[i] = 1;
    const put = (i, c) => {
      const px = Math.round(((P[2 * i] - S.cam.cx) * S.cam.scale + r.width / 2) * k);
      const py = Math.round((r.height / 2 - (P[2 * i + 1] - S.cam.cy) * S.cam.scale) * k);
      if (px < 0 || py < 0 || px + dot > W || py + dot > H) return;
      for (let dy = 0; dy < dot; dy++) buf.fill(c, (py + dy) * W + px, (py + dy) * W + px + dot);
    };
    const dim = 0xffd8d8d8;
    for (const i of DRAWN) if (!sel || !sel[i]) put(i, sel ? dim : COLOURS.packed[i]);
    if (sel) for (const i of DRAWN) if (sel[i]) put(i, COLOURS.packed[i]);
    ctx.putImageData(img, 0, 0);
    S.stats.drawMs = performance.now() - t0;
  }
  function drawOverlay() {
    size(overlay);
    const ctx = overlay.getContext("2d"), k = dpr();
    ctx.setTransform(k, 0, 0, k, 0, 0);
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    DATA.trajectories.forEach((t, ti) => {
      const pts = t.views[S.view];
      if (!pts) return;
      ctx.strokeStyle = ti === S.traj ? "rgba(0,0,0,0.85)" : "rgba(0,0,0,0.35)";
      ctx.lineWidth = ti === S.traj ? 2 : 1;
      ctx.beginPath();
      pts.forEach((p, j) => { const [sx, sy] = toScreen(p[0], p[1]); j ? ctx.lineTo(sx, sy) : ctx.moveTo(sx, sy); });
      ctx.stroke();
      const [ex, ey] = toScreen(pts[pts.length - 1][0], pts[pts.length - 1][1]);
      ctx.fillStyle = ctx.strokeStyle;
      ctx.font = "11px sans-serif";
      ctx.fillText(t.name, ex + 4, ey - 4);
    });
    if (S.modelLabel.startsWith("trajectory")) {
      const [x, y] = trajectoryPlace(S.u);
      const [sx, sy] = toScreen(x, y);
      ctx.fillStyle = "#d62728";
      ctx.beginPath(); ctx.arc(sx, sy, 5, 0, 2 * Math.PI); ctx.fill();
    }
    S.linked = [];
    if (S.cursor && SIBLINGS) { // the copies of the particle nearest the cursor, joined
      const P = VIEWS[S.view], [[, i]] = nearest(S.view, S.cursor[0], S.cursor[1], 1);
      S.linked = SIBLINGS.get(INDEX[i]);
      ctx.strokeStyle = "#ff7f0e"; ctx.fillStyle = "#ff7f0e"; ctx.lineWidth = 1.5;
      ctx.beginPath();
      S.linked.forEach((r, j) => { const [px, py] = toScreen(P[2 * r], P[2 * r + 1]); j ? ctx.lineTo(px, py) : ctx.moveTo(px, py); });
      ctx.stroke();
      S.linked.forEach((r) => { const [px, py] = toScreen(P[2 * r], P[2 * r + 1]); ctx.beginPath(); ctx.arc(px, py, 3.5, 0, 2 * Math.PI); ctx.fill(); });
    }
    if (S.cursor) {
      const [sx, sy] = toScreen(S.cursor[0], S.cursor[1]);
      ctx.strokeStyle = S.pinned ? "#d62728" : "#000";
      ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.arc(sx, sy, 7, 0, 2 * Math.PI); ctx.stroke();
      ctx.beginPath(); ctx.moveTo(sx - 11, sy); ctx.lineTo(sx + 11, sy); ctx.moveTo(sx, sy - 11); ctx.lineTo(sx, sy + 11); ctx.stroke();
    }
    if (S.quiver.length) {
      const [ax, ay] = toScreen(S.quiver[0].x, S.quiver[0].y);
      ctx.fillStyle = "#9467bd"; ctx.strokeStyle = "#9467bd"; ctx.lineWidth = 2;
      ctx.beginPath(); ctx.arc(ax, ay, 4, 0, 2 * Math.PI); ctx.fill();
      if (S.quiver.length === 2) {
        const [bx, by] = toScreen(S.quiver[1].x, S.quiver[1].y);
        arrow(ctx, ax, ay, bx, by, 9);
      }
    }
    if (S.lasso && S.lasso.length > 1) {
      ctx.strokeStyle = "#d62728"; ctx.lineWidth = 1.5; ctx.setLineDash([4, 3]);
      ctx.beginPath();
      S.lasso.forEach((p, j) => { const [sx, sy] = toScreen(p[0], p[1]); j ? ctx.lineTo(sx, sy) : ctx.moveTo(sx, sy); });
      ctx.closePath(); ctx.stroke(); ctx.setLineDash([]);
    }
    if (S.box) {
      const [ax, ay] = toScreen(S.box[0], S.box[1]), [bx, by] = toScreen(S.box[2], S.box[3]);
      ctx.strokeStyle = "#d62728"; ctx.lineWidth = 1.5; ctx.setLineDash([4, 3]);
      ctx.strokeRect(Math.min(ax, bx), Math.min(ay, by), Math.abs(bx - ax), Math.abs(by - ay));
      ctx.setLineDash([]);
    }
  }
  function arrow(ctx, ax, ay, bx, by, head) {
    const a = Math.atan2(by - ay, bx - ax);
    ctx.beginPath(); ctx.moveTo(ax, ay); ctx.lineTo(bx, by); ctx.stroke();
    ctx.beginPath(); ctx.moveTo(bx, by);
    ctx.lineTo(bx - head * Math.cos(a - 0.4), by - head * Math.sin(a - 0.4));
    ctx.lineTo(bx - head * Math.cos(a + 0.4), by - head * Math.sin(a + 0.4));
    ctx.closePath(); ctx.fill();
  }

  // ---------- 3D model ----------
  const SPRITES = [], SPRITE = 64, LEVELS = 32;
  function sprite(c) { // a shaded ball, drawn scaled for every Gaussian
    const cv = document.createElement("canvas");
    cv.width = cv.height = SPRITE;
    const g = cv.getContext("2d"), h = SPRITE / 2;
    const grad = g.createRadialGradient(h * 0.7, h * 0.7, h * 0.1, h, h, h);
    grad.addColorStop(0, css(c.map((v) => Math.min(255, v + 110))));
    grad.addColorStop(0.5, css(c));
    grad.addColorStop(1, css(c.map((v) => Math.round(v * 0.45))));
    g.fillStyle = grad;
    g.beginPath(); g.arc(h, h, h - 0.5, 0, 2 * Math.PI); g.fill();
    return cv;
  }
  for (let l = 0; l < LEVELS; l++) SPRITES.push(sprite(lut(l / (LEVELS - 1))));
  const GREY = sprite([150, 150, 150]);
  // Amplitudes are shaded on one fixed scale (the neutral model's 98th percentile), so a
  // Gaussian fading or growing between two places of the landscape shows as such.
  const AMP_REF = (function () {
    const a = [];
    for (let j = 0; j < DEC.n; j++) a.push(DEC.neutral[5 * j + 3]);
    a.sort((x, y) => x - y);
    return Math.max(1e-12, a[Math.floor(0.98 * (a.length - 1))]);
  })();
  const SCALED = new Map(); // sprites pre-scaled to whole-pixel radii: blits, not resampling
  function scaled(base, key, r) {
    const q = Math.max(1, Math.round(r)), id = key * 4096 + Math.min(q, 4095);
    let cv = SCALED.get(id);
    if (!cv) {
      if (SCALED.size > 6000) SCALED.clear();
      cv = document.createElement("canvas");
      cv.width = cv.height = 2 * q;
      cv.getContext("2d").drawImage(base, 0, 0, 2 * q, 2 * q);
      SCALED.set(id, cv);
    }
    return cv;
  }
  function ball(ctx, level, x, y, r) { // level -1: the grey reference
    const cv = level < 0 ? scaled(GREY, LEVELS, r) : scaled(SPRITES[level], level, r);
    ctx.drawImage(cv, Math.round(x - cv.width / 2), Math.round(y - cv.width / 2));
  }
  let neutralLayer = null; // the faint neutral model, redrawn only when the view changes
  function neutralImage(R, W, H) {
    const key = [S.rot.yaw, S.rot.pitch, S.zoom, W, H, dpr()].join();
    if (neutralLayer && neutralLayer.key === key) return neutralLayer.canvas;
    const cv = document.createElement("canvas"), k = dpr();
    cv.width = Math.round(W * k); cv.height = Math.round(H * k);
    const ctx = cv.getContext("2d");
    ctx.setTransform(k, 0, 0, k, 0, 0);
    const p = project(DEC.neutral, R, W, H);
    ctx.globalAlpha = 0.13;
    for (const j of depthOrder(p)) ball(ctx, -1, p[4 * j], p[4 * j + 1], p[4 * j + 3]);
    neutralLayer = { key, canvas: cv };
    return cv;
  }
  function rotation() {
    const cy = Math.cos(S.rot.yaw), sy = Math.sin(S.rot.yaw), cp = Math.cos(S.rot.pitch), sp = Math.sin(S.rot.pitch);
    // R = Rx(pitch) * Ry(yaw)
    return [[cy, 0, sy], [sp * sy, cp, -sp * cy], [-cp * sy, sp, cp * cy]];
  }
  function project(g, R, W, H) { // screen x, y, depth, radius per Gaussian (css px)
    const n = DEC.n, out = new Float64Array(n * 4), s = Math.min(W, H) * S.zoom;
    for (let j = 0; j < n; j++) {
      const x = g[5 * j], y = g[5 * j + 1], z = g[5 * j + 2];
      out[4 * j] = W / 2 + s * (R[0][0] * x + R[0][1] * y + R[0][2] * z);
      out[4 * j + 1] = H / 2 - s * (R[1][0] * x + R[1][1] * y + R[1][2] * z);
      out[4 * j + 2] = R[2][0] * x + R[2][1] * y + R[2][2] * z;
      out[4 * j + 3] = Math.max(1, s * g[5 * j + 4]);
    }
    return out;
  }
  function depthOrder(p) { // far to near
    const n = DEC.n, order = new Int32Array(n);
    for (let j = 0; j < n; j++) order[j] = j;
    return order.sort((a, b) => p[4 * a + 2] - p[4 * b + 2]);
  }
  function displacements(g) {
    const n = DEC.n, d = new Float64Array(n), nt = DEC.neutral;
    for (let j = 0; j < n; j++) {
      d[j] = Math.hypot(g[5 * j] - nt[5 * j], g[5 * j + 1] - nt[5 * j + 1], g[5 * j + 2] - nt[5 * j + 2]);
    }
    return d;
  }
  function drawModel() {
    const { w: W, h: H } = size(modelCanvas);
    const ctx = modelCanvas.getContext("2d"), k = dpr();
    ctx.setTransform(k, 0, 0, k, 0, 0);
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
    const R = rotation(), n = DEC.n;
    if (S.showNeutral) ctx.drawImage(neutralImage(R, W, H), 0, 0, W, H);
    let legend = "";
    if (S.quiver.length === 2 && S.modelLabel === "quiver") {
      const a = S.quiver[0].model, b = S.quiver[1].model;
      const pa = project(a, R, W, H), pb = project(b, R, W, H), d = new Float64Array(n);
      let max = 0;
      for (let j = 0; j < n; j++) {
        d[j] = Math.hypot(b[5 * j] - a[5 * j], b[5 * j + 1] - a[5 * j + 1], b[5 * j + 2] - a[5 * j + 2]);
        max = Math.max(max, d[j]);
      }
      ctx.lineWidth = 1.5;
      for (const j of depthOrder(pa)) {
        const c = css(lut(max > 0 ? d[j] / max : 0));
        ctx.strokeStyle = c; ctx.fillStyle = c;
        arrow(ctx, pa[4 * j], pa[4 * j + 1], pb[4 * j], pb[4 * j + 1], Math.min(6, 2 + 0.3 * Math.hypot(pb[4 * j] - pa[4 * j], pb[4 * j + 1] - pa[4 * j + 1])));
      }
      legend = "arrows: start to end, colour by length, max " + (max * BOX_A).toFixed(2) + " \u00c5";
    } else if (S.model) {
      const g = S.model, p = project(g, R, W, H), amax = AMP_REF;
      let level;
      if (S.shade === "displacement") {
        const d = displacements(g);
        let max = 1e-3;
        for (let j = 0; j < n; j++) max = Math.max(max, d[j]);
        level = (j) => d[j] / max;
        legend = "colour: displacement from neutral, 0 to " + (max * BOX_A).toFixed(2) + " \u00c5; opacity: amplitude";
      } else {
        level = (j) => g[5 * j + 3] / amax;
        legend = "colour and opacity: amplitude, 0 to the neutral model's 98th percentile; size: width";
      }
      for (const j of depthOrder(p)) {
        const r = p[4 * j + 3], a = Math.min(1, Math.max(0, g[5 * j + 3]) / amax);
        ctx.globalAlpha = 0.3 + 0.7 * a;
        ball(ctx, Math.round((LEVELS - 1) * Math.min(1, Math.max(0, level(j)))), p[4 * j], p[4 * j + 1], r);
      }
      ctx.globalAlpha = 1;
    }
    drawAxes(ctx, R, H);
    $("model-legend").textContent = legend;
    $("model-label").textContent = S.modelLabel;
  }
  function drawAxes(ctx, R, H) {
    const o = [28, H - 28], names = ["x", "y", "z"], cols = ["#d62728", "#2ca02c", "#1f77b4"];
    ctx.lineWidth = 2; ctx.font = "11px sans-serif";
    for (let a = 0; a < 3; a++) {
      const ex = o[0] + 20 * R[0][a], ey = o[1] - 20 * R[1][a];
      ctx.strokeStyle = cols[a]; ctx.fillStyle = cols[a];
      ctx.beginPath(); ctx.moveTo(o[0], o[1]); ctx.lineTo(ex, ey); ctx.stroke();
      ctx.fillText(names[a], ex + 2, ey + 2);
    }
  }

  // ---------- what the model panel shows ----------
  function show(z, label) {
    const t0 = performance.now();
    S.model = DEC.decode(z);
    S.modelLatent = Array.from(z);
    S.modelLabel = label;
    drawModel();
    S.stats.decodeMs.push(performance.now() - t0);
    if (S.stats.decodeMs.length > 50) S.stats.decodeMs.shift();
    const ms = S.stats.decodeMs, mean = ms.reduce((a, b) => a + b, 0) / ms.length;
    $("timing").textContent = "decode + draw " + mean.toFixed(1) + " ms" +
      (S.stats.firstPaintMs !== null ? " \u00b7 first paint " + S.stats.firstPaintMs.toFixed(0) + " ms" : "");
  }
  const fmt = (z) => "(" + Array.from(z, (v) => v.toFixed(3)).join(", ") + ")";
  let pending = null, frameWaiters = [];
  function schedule(task) {
    pending = task;
    requestAnimationFrame(tick);
  }
  function tick(now) {
    if (pending) { const task = pending; pending = null; task(); }
    if (S.playing) {
      const dt = S.lastTick ? (now - S.lastTick) / 1000 : 0;
      S.lastTick = now;
      S.u = (S.u + dt / 4) % 1;
      $("scrub").value = String(Math.round(S.u * 1000));
      showTrajectory();
      requestAnimationFrame(tick);
    }
    const waiting = frameWaiters; frameWaiters = [];
    waiting.forEach((f) => f());
  }
  function decodeCursor() {
    const [x, y] = S.cursor, z = latentAt(x, y);
    show(z, "at the cursor (" + S.view.toUpperCase() + ")");
    $("cursor-info").innerHTML = S.view.toUpperCase() + " (" + x.toFixed(3) + ", " + y.toFixed(3) + ")" +
      (S.pinned ? " pinned" : "") + "<br>latent " + fmt(z) +
      (S.view === "pca" ? "<br>PCA inverse (exact)" : "<br>weighted mean of the " + DATA.nearest + " nearest particles' latents");
    drawOverlay();
  }

  // ---------- trajectories ----------
  function interpolate(points, u) {
    const t = u * (points.length - 1), i = Math.min(points.length - 2, Math.floor(t)), f = t - i;
    return points[i].map((a, k) => a + f * (points[i + 1][k] - a));
  }
  const trajectoryPlace = (u) => interpolate(DATA.trajectories[S.traj].views[S.view], u);
  function showTrajectory() {
    const t = DATA.trajectories[S.traj];
    if (!t) return;
    const z = interpolate(t.latent, S.u);
    show(z, "trajectory " + t.name + " at " + (100 * S.u).toFixed(0) + " %");
    $("trajectory-info").textContent = t.name + ": " + t.latent.length + " points, latent " + fmt(z);
    drawOverlay();
  }

  // ---------- selection ----------
  function inPolygon(x, y, poly) {
    let inside = false;
    for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
      const [xi, yi] = poly[i], [xj, yj] = poly[j];
      if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
    }
    return inside;
  }
  function select(test, label, cls) {
    const P = VIEWS[S.view], rows = [];
    for (let i = 0; i < N_P; i++) if (test(P[2 * i], P[2 * i + 1], i)) rows.push(i);
    setSelection({ label, rows: Int32Array.from(rows), cls });
  }
  function selectedIndices() {
    if (!S.selection) return [];
    return Array.from(new Set(Array.from(S.selection.rows, (i) => INDEX[i]))).sort((a, b) => a - b);
  }
  const quote = (s) => (/^[\w@%+=:,./-]+$/.test(s) ? s : "'" + s.replace(/'/g, "'\\''") + "'");
  function fileName() { return DATA.run + "_selection.txt"; }
  function command() {
    if (!S.selection) return "";
    const stem = fileName().replace(/\.txt$/, "");
    return "gmmscape subset --particles " + quote(DATA.subset.particles || "PARTICLES.star") +
      " --meta " + quote(DATA.subset.meta || "import/meta.json") +
      " --indices " + quote(fileName()) + " --out " + quote(stem + ".star");
  }
  function setSelection(sel) {
    S.selection = sel && sel.rows.length ? sel : null;
    document.querySelectorAll(".class-row").forEach((el) => el.classList.toggle("active", !!(S.selection && S.selection.cls && +el.dataset.cluster === S.selection.cls.cluster)));
    drawPoints();
    drawOverlay();
    const info = $("selection-info");
    $("save").disabled = !S.selection;
    $("command").textContent = "";
    if (!S.selection) { info.textContent = sel ? "no particles in " + sel.label : "lasso or box-select particles, or click a class"; return; }
    const n = S.selection.rows.length, z = meanLatent(S.selection.rows);
    info.innerHTML = "";
    const line = (text, mono) => { const d = document.createElement("div"); d.textContent = text; if (mono) d.className = "mono"; info.appendChild(d); };
    line(S.selection.label + ": " + n + " particles (" + (100 * n / N_P).toFixed(1) + " %)");
    line("model: decoded at their mean latent " + fmt(z));
    if (S.selection.cls) {
      const cls = S.selection.cls;
      line("class map: " + (cls.map || (cls.cluster < 0 ? "none (unassigned particles)" : "none (not in classes.csv)")), true);
      if (S.selection.cls.subset) line("class subset: " + S.selection.cls.subset, true);
    }
    schedule(() => show(z, "mean of " + S.selection.label));
  }
  function save() {
    if (!S.selection) return;
    const text = "# gmmscape selection (" + S.selection.label + ") of run " + DATA.run +
      ": 0-based rows of " + (DATA.subset.particles || "the particle file") + "\n" + selectedIndices().join("\n") + "\n";
    const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
    const a = document.createElement("a");
    a.href = url; a.download = fileName();
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
    $("command").textContent = "Turn it into a STAR of your original rows (run where you saved it):\n" + command();
  }

  // ---------- events ----------
  function local(ev) { const r = overlay.getBoundingClientRect(); return [ev.clientX - r.left, ev.clientY - r.top]; }
  overlay.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const [px, py] = local(ev), [x, y] = toData(px, py);
    S.cam.scale *= Math.exp(-0.0015 * ev.deltaY);
    const [nx, ny] = toData(px, py);
    S.cam.cx += x - nx; S.cam.cy += y - ny;
    drawPoints(); drawOverlay();
  }, { passive: false });
  overlay.addEventListener("pointerdown", (ev) => {
    overlay.setPointerCapture(ev.pointerId);
    const [px, py] = local(ev), [x, y] = toData(px, py);
    S.drag = { px, py, cx: S.cam.cx, cy: S.cam.cy, moved: false };
    if (S.tool === "lasso") S.lasso = [[x, y]];
    if (S.tool === "box") S.box = [x, y, x, y];
  });
  overlay.addEventListener("pointermove", (ev) => {
    const [px, py] = local(ev), [x, y] = toData(px, py);
    if (S.drag) {
      if (Math.hypot(px - S.drag.px, py - S.drag.py) > 3) S.drag.moved = true;
      if (S.tool === "explore" && S.drag.moved) {
        S.cam.cx = S.drag.cx - (px - S.drag.px) / S.cam.scale;
        S.cam.cy = S.drag.cy + (py - S.drag.py) / S.cam.scale;
        drawPoints(); drawOverlay();
        return;
      }
      if (S.tool === "lasso") { S.lasso.push([x, y]); drawOverlay(); return; }
      if (S.tool === "box") { S.box[2] = x; S.box[3] = y; drawOverlay(); return; }
    }
    if (S.tool === "explore" && !S.pinned) {
      S.cursor = [x, y];
      schedule(decodeCursor);
    }
  });
  overlay.addEventListener("pointerup", (ev) => {
    const [px, py] = local(ev), [x, y] = toData(px, py), drag = S.drag;
    S.drag = null;
    if (S.tool === "explore" && drag && !drag.moved) {
      S.pinned = !S.pinned; S.cursor = [x, y];
      schedule(decodeCursor);
    } else if (S.tool === "lasso" && S.lasso) {
      const poly = S.lasso; S.lasso = null;
      if (poly.length >= 3) select((a, b) => inPolygon(a, b, poly), "lasso");
      else drawOverlay();
    } else if (S.tool === "box" && S.box) {
      const [x0, y0, x1, y1] = S.box; S.box = null;
      const lo = [Math.min(x0, x1), Math.min(y0, y1)], hi = [Math.max(x0, x1), Math.max(y0, y1)];
      select((a, b) => a >= lo[0] && a <= hi[0] && b >= lo[1] && b <= hi[1], "box");
    } else if (S.tool === "quiver") {
      if (S.quiver.length === 2) S.quiver = [];
      const z = latentAt(x, y);
      S.quiver.push({ x, y, z, model: DEC.decode(z) });
      if (S.quiver.length === 2) { S.modelLabel = "quiver"; S.model = null; drawModel(); }
      drawOverlay();
    }
  });
  modelCanvas.addEventListener("pointerdown", (ev) => {
    modelCanvas.setPointerCapture(ev.pointerId);
    S.rotDrag = { x: ev.clientX, y: ev.clientY, yaw: S.rot.yaw, pitch: S.rot.pitch };
  });
  modelCanvas.addEventListener("pointermove", (ev) => {
    if (!S.rotDrag) return;
    S.rot.yaw = S.rotDrag.yaw + 0.01 * (ev.clientX - S.rotDrag.x);
    S.rot.pitch = Math.max(-1.57, Math.min(1.57, S.rotDrag.pitch + 0.01 * (ev.clientY - S.rotDrag.y)));
    schedule(drawModel);
  });
  modelCanvas.addEventListener("pointerup", () => { S.rotDrag = null; });
  modelCanvas.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    S.zoom *= Math.exp(-0.0015 * ev.deltaY);
    schedule(drawModel);
  }, { passive: false });

  // ---------- controls ----------
  function options(select, items) {
    for (const [value, text] of items) {
      const o = document.createElement("option"); o.value = value; o.textContent = text; select.appendChild(o);
    }
  }
  options($("view"), Object.keys(VIEWS).map((v) => [v, v.toUpperCase()]));
  options($("colour"), [["class", "class"]].concat(
    DATA.columns.map((c, k) => ["z:" + k, c]),
    Object.keys(VIEWS).flatMap((v) => [0, 1].map((k) => [v + ":" + k, v + k]))));
  options($("trajectory"), DATA.trajectories.map((t, i) => [String(i), t.name]));
  if (!DATA.trajectories.length) { $("trajectory").disabled = $("play").disabled = $("scrub").disabled = true; $("trajectory-info").textContent = "no trajectories in this run"; }
  $("view").addEventListener("change", (ev) => { setView(ev.target.value); });
  $("colour").addEventListener("change", (ev) => { S.colour = ev.target.value; recolour(); drawPoints(); });
  function recolour() {
    COLOURS = colourValues();
    const l = COLOURS.legend;
    $("colour-legend").textContent = l ? "dark " + l[0].toPrecision(3) + " \u2192 yellow " + l[1].toPrecision(3) + " (2nd\u201398th percentile)" : "";
  }
  document.querySelectorAll("input[name=tool]").forEach((el) => el.addEventListener("change", () => { setTool(el.value); }));
  $("reset-view").addEventListener("click", () => { fitCamera(); drawPoints(); drawOverlay(); });
  $("shade").addEventListener("change", (ev) => { S.shade = ev.target.value; drawModel(); });
  $("show-neutral").addEventListener("change", (ev) => { S.showNeutral = ev.target.checked; drawModel(); });
  $("reset-model").addEventListener("click", () => { S.rot = { yaw: 0, pitch: 0 }; S.zoom = 1; drawModel(); });
  $("trajectory").addEventListener("change", (ev) => { S.traj = +ev.target.value; showTrajectory(); });
  $("play").addEventListener("click", () => {
    S.playing = !S.playing; S.lastTick = 0;
    $("play").textContent = S.playing ? "pause" : "play";
    if (S.playing) requestAnimationFrame(tick);
  });
  $("scrub").addEventListener("input", (ev) => { S.u = +ev.target.value / 1000; showTrajectory(); });
  $("save").addEventListener("click", save);
  $("clear").addEventListener("click", () => setSelection(null));
  function setView(view) {
    if (!VIEWS[view]) throw new Error("no view " + view);
    S.view = view; $("view").value = view;
    S.cursor = null; S.pinned = false; S.quiver = [];
    fitCamera(); drawPoints(); drawOverlay();
  }
  function setTool(tool) {
    S.tool = tool;
    document.querySelectorAll("input[name=tool]").forEach((el) => { el.checked = el.value === tool; });
    S.pinned = false;
  }
  function classList() {
    const counts = {};
    for (let i = 0; i < N_P; i++) counts[CLUSTER[i]] = (counts[CLUSTER[i]] || 0) + 1;
    const box = $("classes");
    for (const cls of DATA.classes) {
      const row = document.createElement("div");
      row.className = "class-row"; row.dataset.cluster = cls.cluster;
      const sw = document.createElement("span"); sw.className = "swatch"; sw.style.background = css(classRgb(cls.cluster));
      row.appendChild(sw);
      row.appendChild(document.createTextNode((cls.cluster < 0 ? "unassigned" : "class " + cls.cluster) + ": " + (counts[cls.cluster] || 0)));
      row.addEventListener("click", () => {
        const rows = [];
        for (let i = 0; i < N_P; i++) if (CLUSTER[i] === cls.cluster) rows.push(i);
        setSelection({ label: cls.cluster < 0 ? "unassigned" : "class " + cls.cluster, rows: Int32Array.from(rows), cls });
      });
      box.appendChild(row);
    }
  }

  // ---------- start ----------
  $("summary").textContent = N_P + " particles" + (DATA.n_junk ? " (+" + DATA.n_junk + " junk, not shown)" : "") +
    " \u00b7 latent " + D + "D \u00b7 " + DEC.n + " Gaussians \u00b7 mode " + DATA.decoder.mode +
    (N_P > DATA.draw_limit ? " \u00b7 drawing " + DATA.draw_limit + " of them" : "");
  classList();
  recolour();
  fitCamera();
  drawPoints();
  drawOverlay();
  show(pcaLatent(0, 0), "latent mean (PCA origin)");
  S.stats.firstPaintMs = performance.now();
  // Redraw when a panel changes size (window or layout); the camera keeps its centre.
  new ResizeObserver(() => { drawPoints(); drawOverlay(); drawModel(); }).observe($("landscape"));

  // ---------- the page's interface (also what the tests drive) ----------
  window.explorer = {
    decode: (z) => { const g = DEC.decode(z), out = []; for (let j = 0; j < DEC.n; j++) out.push(Array.from(g.subarray(5 * j, 5 * j + 5))); return out; },
    model: () => (S.model ? window.explorer.gmm(S.model) : null),
    gmm: (g) => { const out = []; for (let j = 0; j < DEC.n; j++) out.push(Array.from(g.subarray(5 * j, 5 * j + 5))); return out; },
    positions: () => (S.model ? window.explorer.gmm(S.model).map((r) => r.slice(0, 3)) : null),
    modelLatent: () => S.modelLatent,
    cursor: () => S.cursor,
    latentAt: (x, y, view) => Array.from(latentAt(x, y, view)),
    nearest: (view, x, y, k) => nearest(view, x, y, k),
    toData: (px, py) => toData(px, py),
    toScreen: (x, y) => toScreen(x, y),
    setView, setTool,
    selection: selectedIndices,
    linked: () => Array.from(S.linked || []),
    selectionRows: () => (S.selection ? Array.from(S.selection.rows) : []),
    command,
    fileName,
    idle: () => new Promise((resolve) => { frameWaiters.push(resolve); requestAnimationFrame(tick); }),
    stats: () => ({ firstPaintMs: S.stats.firstPaintMs, drawMs: S.stats.drawMs, decodeMs: S.stats.decodeMs.slice() }),
    benchDecode: (count) => { // mean ms of decode + 3D draw over count points of the PCA view
      const t0 = performance.now();
      for (let i = 0; i < count; i++) show(pcaLatent(Math.cos(i), Math.sin(i)), "bench");
      return (performance.now() - t0) / count;
    },
  };
})();
