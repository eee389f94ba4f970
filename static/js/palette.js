// The colours of the charts, in one place: a channel has the same colour on the labeling page and in the explorer.
//
// Colour-blind safe: the hues are Okabe & Ito's ("Color Universal Design", 2008), darkened where a line would fall
// under 3:1 contrast against the plot (WCAG 1.4.11, non-text contrast). Meanings never rest on red against green:
// anomaly = vermillion, normal = blue, unsure = yellow, imported ground truth = reddish purple, the model's score a
// neutral line (near-black / near-white) and its threshold a dashed vermillion line. tests/js/palette.test.mjs checks
// the contrasts and that these stay apart under simulated deuteranopia, protanopia and tritanopia.
//
// Two themes follow the system's `prefers-color-scheme` (the CSS in static/app.css does the same with variables):
// `theme()` is the one in force. The named exports below it are the light theme's, for pages that draw on white.

/** Okabe & Ito's eight colours. */
export const OKABE_ITO = {
  black: "#000000", orange: "#E69F00", skyBlue: "#56B4E9", bluishGreen: "#009E73",
  yellow: "#F0E442", blue: "#0072B2", vermillion: "#D55E00", reddishPurple: "#CC79A7",
};
const OI = OKABE_ITO;

const rgba = (hex, alpha) => {
  const v = parseInt(hex.slice(1), 16);
  return `rgba(${(v >> 16) & 255},${(v >> 8) & 255},${v & 255},${alpha})`;
};

function build(name, base) {
  const { fillAlpha } = base;
  return {
    name,
    ...base,
    labelFill: {
      anomaly: rgba(base.label.anomaly, fillAlpha), normal: rgba(base.label.normal, fillAlpha),
      unsure: rgba(base.label.unsure, fillAlpha + 0.08),
    },
    truthFill: rgba(base.truth, base.truthAlpha),
    truthLine: rgba(base.truth, 0.8),
    scoreFill: rgba(base.score, 0.07),
  };
}

/** Everything a chart needs per theme: backgrounds, text, grid, lines and the label meanings. */
export const THEMES = {
  light: build("light", {
    plotBg: "#ffffff", paperBg: "#ffffff", text: "#1d2330", muted: "#667085", grid: "#eef0f3", spike: "#98a2b3",
    stripBg: "#fafbfc", stripLine: "#98a2b3", accent: "#0072B2",
    channels: [OI.blue, OI.vermillion, OI.bluishGreen, OI.reddishPurple, "#A66F00", "#000000", "#2A86C1", "#6B6B6B"],
    score: "#333A48", threshold: OI.vermillion, truth: OI.reddishPurple,
    label: { anomaly: OI.vermillion, normal: OI.blue, unsure: OI.yellow },
    selected: "#1d2330", draft: OI.blue, fillAlpha: 0.22, truthAlpha: 0.22,
  }),
  dark: build("dark", {
    plotBg: "#171c26", paperBg: "#171c26", text: "#e6e9ef", muted: "#a3acbb", grid: "#2a3140", spike: "#6b768a",
    stripBg: "#131821", stripLine: "#6b768a", accent: OI.skyBlue,
    channels: [OI.skyBlue, OI.orange, OI.bluishGreen, OI.reddishPurple, OI.yellow, OI.vermillion, "#5C9EE6", "#BBBBBB"],
    score: "#E6E9EF", threshold: "#FF7A33", truth: OI.reddishPurple,
    label: { anomaly: OI.vermillion, normal: "#3D8FD6", unsure: OI.yellow },
    selected: "#ffffff", draft: OI.skyBlue, fillAlpha: 0.32, truthAlpha: 0.4,
  }),
};

/** "dark" when the system asks for a dark colour scheme, else "light" (also outside a browser). */
export function themeName(win = globalThis.window) {
  return win && typeof win.matchMedia === "function" && win.matchMedia("(prefers-color-scheme: dark)").matches
    ? "dark" : "light";
}

/** The theme in force now. */
export const theme = (win = globalThis.window) => THEMES[themeName(win)];

// ---- the light theme's colours under their long-standing names (the labeling page and the project page) ----
const LIGHT = THEMES.light;
export const CHANNEL_COLORS = LIGHT.channels;
export const channelColor = (i, palette = CHANNEL_COLORS) =>
  palette[((i % palette.length) + palette.length) % palette.length];

export const GRID = LIGHT.grid;
export const SCORE = LIGHT.score; // the model's score on the labeling page
export const SCORE_FILL = LIGHT.scoreFill;
export const OVERLAY_SCORE = LIGHT.score; // the score overlay in the explorer
export const THRESHOLD = LIGHT.threshold;
/** Imported ground truth (the file's label column), shaded in the explorer. */
export const TRUTH_FILL = LIGHT.truthFill;
/** Labels in force on the labeling page. */
export const LABEL_SHADE = LIGHT.labelFill;
/** Analysts' labels over the explorer (not the ground truth's purple, so nobody takes one for the other). */
export const OVERLAY_LABEL_FILL = LIGHT.labelFill;
/** Label counts on the project page. */
export const LABEL_BARS = { anomaly: LIGHT.label.anomaly, normal: LIGHT.label.normal, unsure: "#C9B800" };
