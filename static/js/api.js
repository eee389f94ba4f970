// The JSON API client every page uses: same-origin credentials, `Accept: application/json`, and on every write the
// session's CSRF token from <meta name="csrf-token"> in the `X-CSRF-Token` header (the guard refuses a write
// without it). A refused request becomes an ApiError carrying the status and the server's `detail`.

/** A request the server refused (status >= 400), or one that never reached it (status 0, `offline`). */
export class ApiError extends Error {
  constructor({ status, detail, url }) {
    super(detail);
    this.name = "ApiError";
    this.status = status; // HTTP status; 0 when the request never got an answer
    this.detail = detail; // the server's words, or `HTTP <status>`
    this.url = url;
    this.offline = status === 0;
  }
}

/** The server's `detail` as one line: FastAPI sends a string, or (422) a list of {loc, msg}. */
export function detailOf(body, status) {
  const d = body && typeof body === "object" ? body.detail : undefined;
  if (typeof d === "string" && d) return d;
  if (Array.isArray(d) && d.length) {
    return d.map((e) => (e && typeof e === "object" ? [(e.loc || []).slice(1).join("."), e.msg].filter(Boolean).join(": ") : String(e))).join("; ");
  }
  return `HTTP ${status}`;
}

/** An ApiError from a status and the (parsed, maybe absent) body of the answer. Pure. */
export function errorFromResponse(status, body, url) {
  return new ApiError({ status, detail: detailOf(body, status), url });
}

/** The session's CSRF token, "" on a page without one (the login page). */
export function csrfToken(doc = globalThis.document) {
  const meta = doc && doc.querySelector('meta[name="csrf-token"]');
  return (meta && meta.content) || "";
}

/** Headers of a request: JSON in and out, the CSRF token on anything but GET / HEAD. */
export function requestHeaders(method, hasBody, csrf) {
  const headers = { Accept: "application/json" };
  if (hasBody) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrf;
  return headers;
}

/**
 * The raw Response (for callers that read the status themselves, such as the label outbox). A network failure
 * rejects with ApiError(status 0); an AbortError is passed through untouched.
 */
export async function request(url, { method = "GET", body, signal, fetchImpl = globalThis.fetch } = {}) {
  const hasBody = body !== undefined;
  try {
    return await fetchImpl(url, {
      method, credentials: "same-origin", signal, headers: requestHeaders(method, hasBody, csrfToken()),
      body: hasBody ? JSON.stringify(body) : undefined,
    });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError({ status: 0, detail: (err && err.message) || "network error", url });
  }
}

/** The answer's JSON, or an ApiError when the status is not 2xx. */
export async function readJSON(response, url) {
  const data = await response.json().catch(() => null);
  if (!response.ok) throw errorFromResponse(response.status, data, url);
  return data === null ? {} : data;
}

export async function getJSON(url, opts = {}) {
  return readJSON(await request(url, { ...opts, method: "GET" }), url);
}

export async function postJSON(url, body, opts = {}) {
  return readJSON(await request(url, { ...opts, method: "POST", body: body || {} }), url);
}
