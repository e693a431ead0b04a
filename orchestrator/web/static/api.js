// The HTTP API as the page uses it: the bearer token (kept for this tab only), JSON in and
// out, and errors that carry the API's own words so the page can show them as they are.

const TOKEN_KEY = "orchestrator.token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// `#token=...` in the address (the demo prints such a link): keep it, then drop it from the
// address bar and the history so that it is not bookmarked or shared by accident.
export function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const value = params.get("token");
  if (!value) return false;
  setToken(value);
  history.replaceState(null, "", location.pathname + location.search);
  return true;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(describe(status, body));
    this.status = status;
    this.body = body;
  }
}

function describe(status, body) {
  if (!body || typeof body !== "object") return `HTTP ${status}`;
  let text = body.error || `HTTP ${status}`;
  if (body.detail) text += ` (${body.detail})`;
  if (Array.isArray(body.problems)) {
    text += ": " + body.problems.map((p) => `${p.field}: ${p.problem}`).join("; ");
  }
  return text;
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  const bearer = token();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, { error: "serve does not answer", detail: String(error.message || error) });
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}
