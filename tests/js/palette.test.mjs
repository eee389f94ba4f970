// The chart colours (static/js/palette.js) in both themes: lines stand out from the plot (WCAG 1.4.11: 3:1 for
// graphics), and the meanings (anomaly, normal, unsure labels, ground truth; score against threshold) stay apart for
// colour-blind analysts: CIELAB distance of the colours as shaded on the plot, under simulated deuteranopia,
// protanopia and tritanopia (Machado, Oliveira & Fernandes 2009, severity 1).
import { test } from "node:test";
import assert from "node:assert/strict";
import { THEMES, theme, themeName } from "../../static/js/palette.js";

const rgb = (c) => {
  const m = c.match(/^rgba?\((\d+),\s*(\d+),\s*(\d+)(?:,\s*([\d.]+))?\)$/);
  if (m) return { c: [+m[1], +m[2], +m[3]].map((v) => v / 255), a: m[4] === undefined ? 1 : +m[4] };
  const v = parseInt(c.slice(1), 16);
  return { c: [(v >> 16) & 255, (v >> 8) & 255, v & 255].map((x) => x / 255), a: 1 };
};
const lin = (v) => (v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
const over = (fg, bg) => { const f = rgb(fg), b = rgb(bg).c; return f.c.map((v, k) => v * f.a + b[k] * (1 - f.a)); };
const luminance = (c) => { const [r, g, b] = c.map(lin); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
const contrast = (fg, bg) => {
  const [hi, lo] = [luminance(over(fg, bg)), luminance(rgb(bg).c)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
};
const CVD = {
  none: [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
  deuteranopia: [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.01182, 0.04294, 0.968881]],
  protanopia: [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]],
  tritanopia: [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602], [0.004733, 0.691367, 0.3039]],
};
function lab(linear) {
  const X = [0.4124 * linear[0] + 0.3576 * linear[1] + 0.1805 * linear[2], 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2],
    0.0193 * linear[0] + 0.1192 * linear[1] + 0.9505 * linear[2]];
  const f = X.map((v, k) => v / [0.95047, 1, 1.08883][k]).map((t) => (t > 0.008856 ? Math.cbrt(t) : 7.787 * t + 16 / 116));
  return [116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])];
}
const seen = (c, bg, kind) => {
  const l = over(c, bg).map(lin), m = CVD[kind];
  return lab(m.map((row) => Math.min(1, Math.max(0, row[0] * l[0] + row[1] * l[1] + row[2] * l[2]))));
};
const distance = (a, b, bg, kind) => Math.hypot(...seen(a, bg, kind).map((v, k) => v - seen(b, bg, kind)[k]));

for (const [name, t] of Object.entries(THEMES)) {
  test(`${name}: every line is at least 3:1 against the plot, text 4.5:1`, () => {
    for (const c of [...t.channels, t.score, t.threshold, t.selected, t.draft]) {
      assert.ok(contrast(c, t.plotBg) >= 3, `${c} on ${t.plotBg}: ${contrast(c, t.plotBg).toFixed(2)}`);
    }
    for (const c of [t.text, t.muted]) assert.ok(contrast(c, t.plotBg) >= 4.5, `${c}: ${contrast(c, t.plotBg).toFixed(2)}`);
  });

  test(`${name}: label shades and the ground truth stay apart under colour blindness`, () => {
    const shades = { ...t.labelFill, truth: t.truthFill };
    const names = Object.keys(shades);
    for (const kind of Object.keys(CVD)) {
      for (let a = 0; a < names.length; a++) {
        for (let b = a + 1; b < names.length; b++) {
          const d = distance(shades[names[a]], shades[names[b]], t.plotBg, kind);
          assert.ok(d >= 5, `${name}, ${kind}: ${names[a]} vs ${names[b]} only ${d.toFixed(1)} apart`);
        }
      }
      const d = distance(t.score, t.threshold, t.plotBg, kind);
      assert.ok(d >= 20, `${name}, ${kind}: score vs threshold only ${d.toFixed(1)} apart`);
    }
  });
}

test("the theme follows prefers-color-scheme, light outside a browser", () => {
  const win = (dark) => ({ matchMedia: (q) => ({ matches: dark && q === "(prefers-color-scheme: dark)" }) });
  assert.equal(themeName(win(true)), "dark");
  assert.equal(theme(win(false)).name, "light");
  assert.equal(themeName(undefined), "light");
});
