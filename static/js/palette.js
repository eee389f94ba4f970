// The colours of the charts, in one place: a channel has the same colour on the labeling page and in the explorer.

/** Channel i is drawn in CHANNEL_COLORS[i % length]. */
export const CHANNEL_COLORS = ["#2f6fde", "#0f8a7e", "#8a4fd8", "#c2410c", "#0369a1", "#be185d", "#4d7c0f", "#6b7280"];
export const channelColor = (i) => CHANNEL_COLORS[((i % CHANNEL_COLORS.length) + CHANNEL_COLORS.length) % CHANNEL_COLORS.length];

export const GRID = "#eef0f3";
export const SCORE = "#6d28d9"; // the model's score on the labeling page
export const SCORE_FILL = "rgba(109,40,217,.07)";
export const OVERLAY_SCORE = "#7b3fd1"; // the score overlay in the explorer
export const THRESHOLD = "#d9363e";
/** Imported ground truth (the file's label column), shaded in the explorer. */
export const TRUTH_FILL = "rgba(217,54,62,0.16)";
/** Labels in force on the labeling page. */
export const LABEL_SHADE = { anomaly: "rgba(217,54,62,0.16)", normal: "rgba(31,157,85,0.12)", unsure: "rgba(199,119,0,0.14)" };
/** Analysts' labels over the explorer: orange, not red, so nobody takes them for the imported ground truth. */
export const OVERLAY_LABEL_FILL = { anomaly: "rgba(230,126,34,0.22)", normal: "rgba(31,157,85,0.14)", unsure: "rgba(120,120,120,0.12)" };
/** Label counts on the project page. */
export const LABEL_BARS = { anomaly: "#d9363e", normal: "#1f9d55", unsure: "#e0b25c" };
