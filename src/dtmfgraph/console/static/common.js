// Shared helpers of the console pages (plain ES module, no dependencies).
export const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

export async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(body ?? {}),
    credentials: "same-origin",
  });
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (!response.ok) throw new Error((data && data.error) || `HTTP ${response.status}`);
  return data;
}

export async function get(path) {
  const response = await fetch(path, { credentials: "same-origin" });
  if (response.status === 401) { location.href = "/console/login"; throw new Error("log in"); }
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

export function clock(t) {
  if (!t) return "";
  const d = new Date(t * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function when(t) {
  const d = new Date(t * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(t)}`;
}

export function duration(seconds) {
  if (seconds == null || Number.isNaN(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 60)}:${pad(s % 60)}`;
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child == null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Live updates: server-sent events; the server ends each stream after a while and the browser
// reconnects (reported in the status line).
export function live(query, onMessage) {
  const status = document.getElementById("live");
  const source = new EventSource(`/console/api/stream${query}`);
  let opened = 0;
  source.onopen = () => {
    if (status) status.textContent = "live";
    // the server ends each stream after a while: what happened in between is fetched again
    if (opened++ > 0) onMessage({ type: "resync" });
  };
  source.onerror = () => { if (status) status.textContent = "reconnecting…"; };
  source.onmessage = (event) => onMessage(JSON.parse(event.data));
  // a page left behind (or kept in the back/forward cache) must not hold its stream open: the
  // browser allows six connections per host, and held streams would queue the next page's POSTs
  addEventListener("pagehide", () => source.close());
  addEventListener("pageshow", (event) => { if (event.persisted) location.reload(); });
  return source;
}

document.getElementById("logout")?.addEventListener("click", async () => {
  await post("/console/api/logout", {}).catch(() => null);
  location.href = "/console/login";
});
