import { clock, el, get, live } from "./common.js";

const body = document.querySelector("#deliveries tbody");
const pre = document.getElementById("body");

function row(d) {
  const changes = d.changes.map((c) => `${c.changeType} ${c.type ?? ""} ${c.state ?? c.status ?? ""}`.trim());
  return el("tr", { "data-id": d.id },
    el("td", {}, el("button", { type: "button", class: "link",
      onclick: () => { pre.textContent = d.body ? JSON.stringify(d.body, null, 2) : `refused: ${d.reason}`; } },
      clock(d.at))),
    el("td", {}, d.inbox),
    el("td", {}, d.valid ? el("span", { class: "ok", title: "token verified" }, "✓ verified")
      : el("span", { class: "bad" }, `✗ ${d.reason}`)),
    el("td", {}, changes.join("; ")),
    el("td", {}, d.call ? el("a", { href: `/console/calls/${d.call}` }, d.call.slice(0, 8)) : ""));
}

async function reload() {
  const deliveries = (await get("/console/api/inbox")).value;
  body.replaceChildren(...deliveries.map(row));
}

live("?topic=inbox", (message) => { if (message.type === "inbox" || message.type === "resync") reload().then(() => { document.body.dataset.ready = "yes"; }); });
reload().then(() => { document.body.dataset.ready = "yes"; });
