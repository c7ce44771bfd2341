import { clock, el, get, live, post } from "./common.js";
import { Spectrogram } from "./spectrogram.js";

const callId = document.getElementById("call-id").dataset.id;
const base = `/console/api/calls/${callId}`;
const result = document.getElementById("phone-result");
const seen = new Set();
let lastSeq = 0;
let farIndex = null;

const tables = {
  keys: document.querySelector("#keytable tbody"),
  timeline: document.querySelector("#timeline tbody"),
  notes: document.querySelector("#notes tbody"),
};
const ladder = document.getElementById("ladder");
const noteBody = document.getElementById("note-body");

function describe(e) {
  switch (e.kind) {
    case "state": return [`call ${e.state}`, e.result ? `${e.result.code}/${e.result.subcode} ${e.result.message}` : e.event];
    case "operation": return [`${e.operation} ${e.status}`,
      e.tones?.length ? `tones ${e.tones.join(" ")} by ${e.method}, ${e.tone_ms} ms on, ${e.delay_ms} ms apart`
        : `${e.completion ?? ""} ${e.result ? `${e.result.code}/${e.result.subcode}` : ""}`.trim()];
    case "key-sent": return [`key ${e.key} sent`, `left the media layer by ${e.method}`];
    case "key-heard": return [`key ${e.key} heard`, `${e.method}${e.level_dbm0 != null ? `, ${e.level_dbm0} dBm0` : ""}${e.duration_ms != null ? `, ${e.duration_ms} ms` : ""}`];
    case "media": return ["media up", [e.codec ?? "simulated (loopback)", e.event_pt != null ? `telephone-event ${e.event_pt}` : null,
      e.rfc4733 ? "RFC 4733 possible" : "no RFC 4733", e.sipinfo ? "SIP INFO possible" : null,
      e.srtp ? `SRTP ${e.srtp}` : null, e.local && e.remote ? `${e.local} ⇄ ${e.remote}` : null].filter(Boolean).join(", ")];
    case "rtcp": return ["RTCP", `round trip ${e.rtt_ms ?? "?"} ms, far end lost ${e.far_lost} of ours (${(e.far_fraction_lost * 100).toFixed(1)} %), jitter ${e.far_jitter_ms} ms; we got ${e.rtp_in ?? "?"} RTP, ${e.rtp_lost ?? "?"} lost`];
    case "delivery": return [`notification ${e.notification} attempt ${e.attempt}`, `${e.status ?? e.error} in ${e.ms} ms (${e.outcome})`];
    case "roster": return ["participants", e.participants.map((p) => `${p.who}${p.muted ? " (muted)" : ""}, ${p.direction}`).join("; ") || "none"];
    case "tone-notified": return ["toneInfo notified", e.tone];
    case "prompt": return ["prompt played", `${e.seconds} s of audio (operation ${e.operation})`];
    case "recording": return [`recording of ${e.seconds} s`, el("span", {}, `${e.reason} `,
      el("audio", { controls: "", preload: "none", src: `${base}/recordings/${e.operation}`, "aria-label": `the recording of operation ${e.operation}` }))];
    case "sip": return [`SIP ${e.dir === "out" ? "→" : "←"} ${e.label}`, `${e.peer} over ${e.transport}`];
    default: {
      const { seq, at, kind, ...rest } = e;
      return [kind, JSON.stringify(rest)];
    }
  }
}

function ladderRow(e) {
  const out = e.dir === "out";
  const details = el("div", { class: "sipdetail", hidden: "" },
    el("p", {}, `${e.first}`),
    el("p", {}, `CSeq ${e.cseq ?? "?"} · Call-ID ${e.call_id} · ${e.peer} over ${e.transport}`),
    e.sdp ? el("p", {}, `SDP: ${e.sdp}`) : null);
  const full = el("pre", { class: "text", hidden: "", tabindex: "0" }, e.text + (e.cut ? `\n… (${e.cut} more characters)` : ""));
  const more = el("button", { type: "button", class: "quiet",
    onclick: () => { full.hidden = !full.hidden; } }, "Full message");
  details.append(more, full);
  const arrow = el("button", { type: "button", class: `arrow ${out ? "right" : "left"}`, "aria-expanded": "false",
    onclick: (ev) => { details.hidden = !details.hidden; ev.currentTarget.setAttribute("aria-expanded", String(!details.hidden)); } },
    el("span", { class: "label" }, `${e.label}`),
    el("span", { class: "sr" }, out ? " from dtmfgraph to the far end" : " from the far end to dtmfgraph"));
  return el("li", { "data-label": e.label, "data-dir": e.dir },
    el("span", { class: "t" }, clock(e.at)), el("span", { class: "end us" }, "dtmfgraph"), arrow,
    el("span", { class: "end them" }, e.peer), details);
}

// rows stay in time order: a delivery attempt is stamped when its POST began but told when it
// ended, after later entries
function placeRow(body, row, at) {
  row.dataset.at = at;
  const later = [...body.children].find((r) => Number(r.dataset.at) > at);
  body.insertBefore(row, later ?? null);
}

function addEntry(e) {
  if (seen.has(e.seq)) return;
  seen.add(e.seq);
  lastSeq = Math.max(lastSeq, e.seq);
  const [what, detail] = describe(e);
  placeRow(tables.timeline, el("tr", { "data-kind": e.kind }, el("td", {}, clock(e.at)), el("td", {}, what), el("td", {}, detail)), e.at);
  if (e.kind === "sip") ladder.append(ladderRow(e));
  if (e.kind === "operation" && e.id && result.dataset.op === e.id) result.textContent = `operation ${e.id} ${e.status}${e.completion ? ` (${e.completion})` : ""}`;
  if (e.kind === "key-sent" || e.kind === "key-heard") {
    placeRow(tables.keys, el("tr", { "data-kind": e.kind },
      el("td", {}, clock(e.at)), el("td", {}, e.kind === "key-sent" ? "sent" : "heard"),
      el("td", { class: "k" }, e.key), el("td", {}, e.method),
      el("td", {}, e.kind === "key-heard" && e.level_dbm0 != null ? `${e.level_dbm0} dBm0` : "")), e.at);
  }
  if (e.kind === "delivery") {
    placeRow(tables.notes, el("tr", { "data-outcome": e.outcome },
      el("td", {}, el("button", { type: "button", class: "link", onclick: () => { noteBody.textContent = pretty(e.body); } }, clock(e.at))),
      el("td", {}, `#${e.notification} ${kindOf(e.body)}${e.batch > 1 ? ` (${e.index + 1} of ${e.batch} in one POST)` : ""}`),
      el("td", {}, `${e.attempt} (${e.outcome})`),
      el("td", {}, e.status != null ? String(e.status) : e.error),
      el("td", {}, `${e.ms} ms`)), e.at);
  }
}

function pretty(text) { try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; } }
function kindOf(text) {
  try {
    const note = JSON.parse(text).value[0];
    const data = note.resourceData;  // a roster update carries the participants, a list
    const what = Array.isArray(data) ? "participants" : data["@odata.type"].replace("#microsoft.graph.", "");
    return `${note.changeType} ${what}`;
  } catch { return ""; }
}

function showCall(call) {
  const state = document.getElementById("state");
  state.textContent = call.state;
  state.className = `state ${call.state}`;
  const ended = call.state === "terminated" || call.state === "terminating";
  document.getElementById("answer").hidden = call.state !== "incoming";
  document.getElementById("reject").hidden = call.state !== "incoming";
  document.getElementById("hangup").disabled = ended;
  for (const b of document.querySelectorAll("#send button, .key, #prompt button")) b.disabled = call.state !== "established";
  const far = document.getElementById("far");
  if (far) for (const b of far.querySelectorAll("button")) b.disabled = farIndex == null || ended;
  const target = call.targets?.[0]?.identity ?? call.source?.identity ?? {};
  const who = Object.values(target).find((v) => v && v.id);
  document.getElementById("farend").textContent = who ? `with ${who.id}` : "";
}

async function refresh() {
  const data = await get(`${base}?after=${lastSeq}`);
  farIndex = data.farEnd;
  data.entries.forEach(addEntry);
  showCall(data.call);
  if (!data.audio) document.getElementById("spec-note").textContent = "No audio kept for this call (loopback media has none).";
  document.getElementById("spectrogram").hidden = !data.audio;
  document.getElementById("ladder-note").hidden = ladder.children.length > 0;
  return data;
}

live(`?call=${callId}`, (message) => {
  if (message.type === "entry" && message.call === callId) addEntry(message.entry);
  if ((message.type === "call" && message.call === callId) || message.type === "resync") refresh();
});

async function act(path, body) {
  try { return await post(`${base}${path}`, body); } catch (error) { result.textContent = error.message; throw error; }
}

const TONES = { "*": "star", "#": "pound" };
const tone = (k) => TONES[k] ?? (/\d/.test(k) ? `tone${k}` : k.toLowerCase());
async function send(keys) {
  const method = document.getElementById("method").value;
  const op = await act("/sendDtmfTones", { tones: [...keys].map(tone), dtmfMethod: method });
  result.dataset.op = op.id;
  result.textContent = `operation ${op.id} ${op.status}`;
}
for (const b of document.querySelectorAll(".key")) b.addEventListener("click", () => send(b.dataset.key).catch(() => null));
document.getElementById("send").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const keys = document.getElementById("keys").value.replace(/\s/g, "");
  if (keys) send(keys).catch(() => null);
});
document.getElementById("prompt").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const uri = document.getElementById("prompt-uri").value.trim();
  if (!uri) return;
  const prompt = { "@odata.type": "#microsoft.graph.mediaPrompt", mediaInfo: { "@odata.type": "#microsoft.graph.mediaInfo", uri } };
  follow(act("/playPrompt", { prompts: [prompt] }));
});
document.getElementById("record").addEventListener("click", () => follow(act("/recordResponse", {
  playBeep: true, initialSilenceTimeoutInSeconds: 5, maxSilenceTimeoutInSeconds: 2,
  maxRecordDurationInSeconds: 10, stopTones: ["#"],
})));
function follow(request) {
  request.then((op) => {
    result.dataset.op = op.id;
    result.textContent = `operation ${op.id} ${op.status}`;
  }).catch(() => null);
}
document.getElementById("hangup").addEventListener("click", () => act("/hangup").catch(() => null));
document.getElementById("answer").addEventListener("click", () => act("/answer").catch(() => null));
document.getElementById("reject").addEventListener("click", () => act("/reject").catch(() => null));
for (const b of document.querySelectorAll(".farkey")) {
  b.addEventListener("click", () => act("/far/press", { keys: b.dataset.key, method: document.getElementById("far-method").value }).catch(() => null));
}
document.getElementById("far-hold")?.addEventListener("click", () => act("/far/hold").catch(() => null));
document.getElementById("far-resume")?.addEventListener("click", () => act("/far/resume").catch(() => null));
document.getElementById("far-hangup")?.addEventListener("click", () => act("/far/hangup").catch(() => null));

const spectrogram = new Spectrogram(document.getElementById("spectrogram"), `${base}/spectrogram`,
  document.getElementById("spec-note"));
document.getElementById("zoom-in").addEventListener("click", () => spectrogram.zoom(0.5));
document.getElementById("zoom-out").addEventListener("click", () => spectrogram.zoom(2));
document.getElementById("pan-left").addEventListener("click", () => spectrogram.pan(-0.5));
document.getElementById("pan-right").addEventListener("click", () => spectrogram.pan(0.5));
document.getElementById("spec-load").addEventListener("click", () => spectrogram.load());
document.getElementById("spec-side").addEventListener("change", (ev) => {
  spectrogram.side = ev.currentTarget.value; spectrogram.view = null; spectrogram.load();
});

refresh().then((data) => {
  document.body.dataset.ready = "yes";
  if (data.audio) spectrogram.load();
  else for (const id of ["zoom-in", "zoom-out", "pan-left", "pan-right", "spec-load", "spec-side"]) document.getElementById(id).disabled = true;
  if (!ladder.children.length && !data.call.state.startsWith("establishing")) ladder.dataset.empty = "yes";
});
