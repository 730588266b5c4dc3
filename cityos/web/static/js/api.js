// Talking to CityOS: the signed-in key (sessionStorage), authenticated fetch, live events.
//
// Every request carries `Authorization: Bearer <key>` and, when the user named one,
// `NGSILD-Tenant`. The live stream is read with fetch (not EventSource) so that the
// key travels in a header, never in a URL that ends up in access logs.

const SESSION_KEY = "cityos.session";

export function loadSession() {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION_KEY)) || null;
  } catch {
    return null;
  }
}

export function saveSession(session) {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

export function clearSession() {
  sessionStorage.removeItem(SESSION_KEY);
}

/** An error of the CityOS API, with its ProblemDetails body. */
export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function headers(session, extra = {}) {
  const out = { Accept: "application/json", ...extra };
  if (session && session.key) out.Authorization = `Bearer ${session.key}`;
  if (session && session.tenant) out["NGSILD-Tenant"] = session.tenant;
  return out;
}

/** fetch() a CityOS URL as the signed-in key; JSON in, JSON out (null for 204). */
export async function api(session, url, { method = "GET", body, signal } = {}) {
  const init = { method, headers: headers(session), signal };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(url, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/**
 * Read the tenant's live events (Server-Sent Events over fetch) until `signal` aborts.
 * Reconnects after a drop; `onState` gets "connecting" / "live" / "off".
 */
export async function streamEvents(session, { onEvent, onState, signal }) {
  let delay = 1000;
  while (!signal.aborted) {
    onState("connecting");
    try {
      const response = await fetch("/web/api/stream", {
        headers: headers(session, { Accept: "text/event-stream" }), signal,
      });
      if (response.status === 401 || response.status === 403) {
        onState("off");
        onEvent("denied", null);
        return;
      }
      if (!response.ok) throw new Error(`stream: HTTP ${response.status}`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const message = parseSse(block);
          if (message) {
            if (message.event === "hello") { onState("live"); delay = 1000; }
            onEvent(message.event, message.data);
          }
        }
      }
    } catch (error) {
      if (signal.aborted) return;
    }
    if (signal.aborted) return;
    onState("connecting");
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 15000);
    onEvent("reconnected", null);
  }
}

function parseSse(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  return { event, data: JSON.parse(data.join("\n")) };
}
