// Test hooks: records the browser tests and scripts/measure_*.py read from `window` (window.__lq, window.explorerStats).
// They are put on `window` only when the server marks the page with <html data-test-hooks>, which it does outside
// production (ANOMALOOP_ENVIRONMENT != production); a production page keeps them to itself.

export function testHooksEnabled(doc = globalThis.document) {
  return !!(doc && doc.documentElement && doc.documentElement.hasAttribute("data-test-hooks"));
}

/** `value`, also set as window[name] when the page allows test hooks. */
export function exposeForTests(name, value, win = globalThis.window, doc = globalThis.document) {
  if (win && testHooksEnabled(doc)) win[name] = value;
  return value;
}
