// Charts of the console pages: small helpers over uPlot (vendored from npm, served from
// /assets/console/uPlot.iife.min.js). Times are UTC; every chart carries a text summary for screen
// readers (role="img" + aria-label) and a live legend that follows the cursor.
"use strict";
const PALETTE = ["#3355cc", "#e07b00", "#11936f", "#c2364a", "#7a4fc9", "#2a9bd6", "#b08900", "#5b6478"];

/**
 * Draws a time chart in `box`, replacing what was there.
 * `times`: ms since the epoch; `series`: [{label, values, color}].
 * `opts`: {height, bars, stacked, step, fill, summary, yLabel, xRange: [fromMs, toMs]}. Stacked bars show each series' own value
 * in the legend. Returns the uPlot instance.
 */
function timeChart(box, times, series, opts = {}) {
  if (box._plot) { box._plot.destroy(); box._plot = null; }
  if (box._observer) { box._observer.disconnect(); box._observer = null; }
  box.replaceChildren();
  box.classList.add("chart");
  box.setAttribute("role", "img");
  const total = series.map((s) => s.label + " " + s.values.reduce((a, b) => a + (b || 0), 0)).join(", ");
  box.setAttribute("aria-label", opts.summary || ("Chart: " + total));
  if (!times.length || !series.length) { box.append(cell("p", "No data in this period.", "empty")); return null; }
  let values = series.map((s) => s.values);
  let order = series.map((_, i) => i);
  if (opts.stacked) {
    const cum = [];
    values.forEach((v, i) => cum.push(v.map((x, j) => (x || 0) + (i ? cum[i - 1][j] : 0))));
    order = order.reverse(); // tallest first, so each smaller stack is drawn over it
    values = order.map((i) => cum[i]);
  }
  const bars = opts.bars ? uPlot.paths.bars({ size: [0.7, 40] }) : null;
  const stepped = opts.step ? uPlot.paths.stepped({ align: 1 }) : null;
  const uSeries = [{ value: (u, v) => v == null ? "—" : fmt.time(v * 1000) }].concat(order.map((i) => {
    const s = series[i], color = s.color || PALETTE[i % PALETTE.length];
    return {
      label: s.label, stroke: color, width: opts.bars ? 0 : 2,
      fill: opts.bars || opts.fill ? color + (opts.bars ? "" : "22") : undefined,
      paths: bars || stepped || undefined, points: { show: false },
      value: (u, v, si, di) => di == null ? "—" : fmt.num(series[i].values[di]),
    };
  }));
  const width = () => Math.max(240, Math.floor(box.getBoundingClientRect().width || 600));
  const plot = new uPlot({
    width: width(), height: opts.height || 180,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    scales: { x: { time: true, range: (u, min, max) => opts.xRange ? [opts.xRange[0] / 1000, opts.xRange[1] / 1000] : (min === max ? [min - 60, max + 60] : [min, max]) }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
    axes: [{ stroke: "#5b6478", grid: { stroke: "#eef0f5" } },
      { stroke: "#5b6478", grid: { stroke: "#eef0f5" }, size: 48, label: opts.yLabel, labelSize: opts.yLabel ? 18 : 0,
        values: (u, ticks) => ticks.map((t) => Number.isInteger(t) ? fmt.num(t) : "") }],
    cursor: { points: { show: !opts.bars } },
    series: uSeries,
  }, [times.map((t) => t / 1000), ...values], box);
  box._plot = plot;
  box._observer = new ResizeObserver(() => { const w = width(); if (Math.abs(w - plot.width) > 4) plot.setSize({ width: w, height: plot.height }); });
  box._observer.observe(box);
  return plot;
}
