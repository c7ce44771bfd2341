import { duration, el, get, live, post, when } from "./common.js";

const body = document.querySelector("#calls tbody");
const result = document.getElementById("place-result");

function row(c) {
  return el("tr", { "data-id": c.id, "data-created": c.createdAt },
    el("td", {}, el("a", { href: `/console/calls/${c.id}` }, when(c.createdAt))),
    el("td", {}, c.direction),
    el("td", {}, c.farEnd),
    el("td", {}, el("span", { class: `state ${c.state}` }, c.state)),
    el("td", { class: "dur", "data-start": c.createdAt, "data-end": c.endedAt ?? "" }),
    el("td", {}, c.methods.join(", ")));
}

function tick() {
  const now = Date.now() / 1000;
  for (const cell of document.querySelectorAll("td.dur")) {
    const start = Number(cell.dataset.start);
    const end = cell.dataset.end ? Number(cell.dataset.end) : null;
    cell.textContent = duration((end ?? now) - start);
  }
  for (const a of document.querySelectorAll("a.when")) {
    a.textContent = when(Number(a.dataset.t));
    a.classList.remove("when");
  }
}

async function reload() {
  const rows = (await get("/console/api/calls")).value;
  const older = [...body.querySelectorAll("tr")].slice(50);
  body.replaceChildren(...rows.map(row), ...older);
  tick();
}

let pending = null;
live("", (message) => {
  if (message.type === "call" || message.type === "resync") {
    if (!pending) pending = setTimeout(() => { pending = null; reload(); }, 150);
  }
});

document.getElementById("older").addEventListener("click", async () => {
  const last = body.querySelector("tr:last-child");
  if (!last) return;
  const rows = (await get(`/console/api/calls?before=${last.dataset.created}`)).value;
  body.append(...rows.map(row));
  tick();
});

document.getElementById("place").addEventListener("submit", async (event) => {
  event.preventDefault();
  const target = document.getElementById("target").value.trim();
  const callback = document.getElementById("callback").value.trim();
  const identity = /^\+\d+$/.test(target) ? { phone: { id: target } } : { user: { id: target } };
  try {
    const call = await post("/console/api/calls", {
      callbackUri: callback, requestedModalities: ["audio"], targets: [{ identity }],
    });
    location.href = `/console/calls/${call.id}`;
  } catch (error) { result.textContent = `Not placed: ${error.message}`; }
});

document.getElementById("incoming")?.addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await post("/console/api/incoming", { caller: document.getElementById("caller").value });
    result.textContent = "An incoming call is ringing: open it to answer.";
  } catch (error) { result.textContent = `Not simulated: ${error.message}`; }
});

tick();
setInterval(tick, 1000);
document.body.dataset.ready = "yes";
