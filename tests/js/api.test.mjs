// The API client (static/js/api.js): the CSRF header on writes, and refusals shaped as ApiError.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ApiError, detailOf, errorFromResponse, csrfToken, requestHeaders, request, getJSON, postJSON,
} from "../../static/js/api.js";

const fakeDoc = (token) => ({ querySelector: (sel) => (sel === 'meta[name="csrf-token"]' && token !== null ? { content: token } : null) });

function respond(status, body) {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  return { ok: status >= 200 && status < 300, status, json: async () => JSON.parse(text) };
}

test("detailOf: the server's string, a 422's list as one line, else HTTP <status>", () => {
  assert.equal(detailOf({ detail: "round is closed" }, 409), "round is closed");
  assert.equal(detailOf({ detail: [{ loc: ["body", "start"], msg: "must be >= 0" }, { loc: ["query"], msg: "bad" }] }, 422),
    "start: must be >= 0; bad");
  assert.equal(detailOf(null, 502), "HTTP 502");
  assert.equal(detailOf({}, 500), "HTTP 500");
  assert.equal(detailOf({ detail: "" }, 404), "HTTP 404");
  assert.equal(detailOf("not an object", 500), "HTTP 500");
});

test("errorFromResponse gives an ApiError with status, detail, url and the detail as message", () => {
  const err = errorFromResponse(404, { detail: "no such series" }, "/api/v1/series/9/view");
  assert.ok(err instanceof ApiError && err instanceof Error);
  assert.equal(err.name, "ApiError");
  assert.equal(err.status, 404);
  assert.equal(err.detail, "no such series");
  assert.equal(err.message, "no such series");
  assert.equal(err.url, "/api/v1/series/9/view");
  assert.equal(err.offline, false);
});

test("csrfToken reads the page's meta tag, '' without one", () => {
  assert.equal(csrfToken(fakeDoc("tok-1")), "tok-1");
  assert.equal(csrfToken(fakeDoc(null)), "");
  assert.equal(csrfToken(undefined), "");
});

test("requestHeaders: the CSRF header on writes only, Content-Type with a body only", () => {
  assert.deepEqual(requestHeaders("GET", false, "t"), { Accept: "application/json" });
  assert.deepEqual(requestHeaders("POST", true, "t"), { Accept: "application/json", "Content-Type": "application/json", "X-CSRF-Token": "t" });
  assert.deepEqual(requestHeaders("POST", false, "t"), { Accept: "application/json", "X-CSRF-Token": "t" });
  assert.equal(requestHeaders("DELETE", false, "t")["X-CSRF-Token"], "t");
});

test("postJSON sends the token and the JSON body; getJSON returns the data", async (t) => {
  globalThis.document = fakeDoc("csrf-abc");
  t.after(() => { delete globalThis.document; });
  const calls = [];
  const fetchImpl = async (url, init) => { calls.push([url, init]); return respond(200, { ok: 1 }); };
  assert.deepEqual(await postJSON("/api/v1/x", { a: 1 }, { fetchImpl }), { ok: 1 });
  const [url, init] = calls[0];
  assert.equal(url, "/api/v1/x");
  assert.equal(init.method, "POST");
  assert.equal(init.credentials, "same-origin");
  assert.equal(init.headers["X-CSRF-Token"], "csrf-abc");
  assert.equal(init.body, JSON.stringify({ a: 1 }));
  assert.deepEqual(await getJSON("/api/v1/y", { fetchImpl }), { ok: 1 });
  assert.equal(calls[1][1].method, "GET");
  assert.equal(calls[1][1].headers["X-CSRF-Token"], undefined);
  assert.equal(calls[1][1].body, undefined);
});

test("a refusal rejects with ApiError carrying the server's detail, a non-JSON body with HTTP <status>", async () => {
  const refuse = async () => respond(403, { detail: "admins only" });
  await assert.rejects(postJSON("/api/v1/versions/3/promote", {}, { fetchImpl: refuse }),
    (e) => e instanceof ApiError && e.status === 403 && e.message === "admins only");
  const html = async () => respond(502, "<html>bad gateway</html>");
  await assert.rejects(getJSON("/api/v1/z", { fetchImpl: html }), (e) => e.status === 502 && e.detail === "HTTP 502");
});

test("no answer at all is ApiError(status 0, offline); an abort stays an AbortError", async () => {
  const down = async () => { throw new TypeError("Failed to fetch"); };
  await assert.rejects(request("/api/v1/q", { fetchImpl: down }), (e) => e instanceof ApiError && e.status === 0 && e.offline);
  const aborted = async () => { throw new DOMException("aborted", "AbortError"); };
  await assert.rejects(getJSON("/api/v1/q", { fetchImpl: aborted }), (e) => e.name === "AbortError" && !(e instanceof ApiError));
});
