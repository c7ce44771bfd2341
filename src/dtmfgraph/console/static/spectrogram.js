// The spectrogram view: levels from the server (the detector's block grid), keys marked with
// their two tones; zoom and pan re-ask the server for the visible window at full resolution.
import { clock } from "./common.js";

const MARGIN = { left: 48, right: 8, top: 8, bottom: 22 };

function colour(v) {  // 0..255 -> dark blue .. yellow
  const t = v / 255;
  return [Math.round(255 * Math.min(1, Math.max(0, 1.6 * t - 0.5))),
    Math.round(255 * Math.min(1, 1.3 * t)),
    Math.round(255 * Math.max(0, 0.55 - Math.abs(t - 0.35)) * 1.6 + 30 * (1 - t))];
}

export class Spectrogram {
  constructor(canvas, url, note) {
    this.canvas = canvas; this.url = url; this.note = note;
    this.view = null;  // {since, until} wall seconds; null: all the audio kept
    this.side = "far";
    this.data = null;
    canvas.addEventListener("wheel", (ev) => {  // Ctrl + wheel zooms; the wheel alone scrolls
      if (!ev.ctrlKey) return;
      ev.preventDefault();
      this.zoom(ev.deltaY < 0 ? 0.5 : 2);
    });
  }

  async load() {
    const width = this.canvas.width - MARGIN.left - MARGIN.right;
    const q = new URLSearchParams({ columns: String(Math.max(10, Math.min(2000, width))), side: this.side });
    if (this.view) { q.set("since", this.view.since); q.set("until", this.view.until); }
    const response = await fetch(`${this.url}?${q}`, { credentials: "same-origin" });
    const data = await response.json();
    if (!response.ok) { this.note.textContent = data.error; return; }
    this.data = data;
    this.canvas.dataset.keys = data.keys.map((k) => k.key).join("");
    window.dtmfgraphSpectrogram = data;
    this.draw();
    this.note.textContent = `${data.seconds.toFixed(2)} s from ${clock(data.start)}; ${data.keys.length} key(s) found by the detector: ${data.keys.map((k) => k.key).join(" ")}`;
  }

  zoom(factor) {
    const d = this.data; if (!d) return;
    const since = this.view ? this.view.since : d.start;
    const until = this.view ? this.view.until : d.start + d.seconds;
    const mid = (since + until) / 2, half = Math.max(0.05, (until - since) * factor / 2);
    this.view = { since: mid - half, until: mid + half };
    this.load();
  }

  pan(share) {
    const d = this.data; if (!d) return;
    const since = this.view ? this.view.since : d.start;
    const until = this.view ? this.view.until : d.start + d.seconds;
    const step = (until - since) * share;
    this.view = { since: since + step, until: until + step };
    this.load();
  }

  draw() {
    const d = this.data, c = this.canvas, g = c.getContext("2d");
    const w = c.width - MARGIN.left - MARGIN.right, h = c.height - MARGIN.top - MARGIN.bottom;
    g.fillStyle = "#fff"; g.fillRect(0, 0, c.width, c.height);
    if (!d.columns || !d.bins) return;
    const cells = Uint8Array.from(atob(d.cells), (ch) => ch.charCodeAt(0));
    const image = g.createImageData(d.columns, d.bins);
    for (let x = 0; x < d.columns; x++) {
      for (let y = 0; y < d.bins; y++) {
        const [r, gr, b] = colour(cells[x * d.bins + y]);
        const i = ((d.bins - 1 - y) * d.columns + x) * 4;
        image.data[i] = r; image.data[i + 1] = gr; image.data[i + 2] = b; image.data[i + 3] = 255;
      }
    }
    const off = document.createElement("canvas");
    off.width = d.columns; off.height = d.bins;
    off.getContext("2d").putImageData(image, 0, 0);
    g.imageSmoothingEnabled = false;
    g.drawImage(off, MARGIN.left, MARGIN.top, w, h);
    const [f0, f1] = d.freqs;
    const xOf = (t) => MARGIN.left + ((t - d.start) / d.seconds) * w;
    const yOf = (f) => MARGIN.top + h - ((f - f0) / (f1 - f0)) * h;
    g.font = "11px sans-serif"; g.fillStyle = "#222"; g.strokeStyle = "#222";
    for (const f of [0, 500, 1000, 1500, 2000]) { g.fillText(f === 2000 ? "2 kHz" : `${f}`, 4, yOf(f) + (f === 2000 ? 10 : 4)); }
    for (let i = 0; i <= 4; i++) {
      const t = d.start + (d.seconds * i) / 4;
      g.fillText(clock(t).slice(3), Math.min(xOf(t), c.width - 60), c.height - 6);
    }
    for (const k of d.keys) {
      const x0 = xOf(k.start), x1 = Math.max(xOf(k.end), x0 + 2);
      g.strokeStyle = "#fff"; g.lineWidth = 1.5;
      g.strokeRect(x0, MARGIN.top, x1 - x0, h);
      for (const f of [k.low, k.high]) {
        g.strokeStyle = "#e00"; g.beginPath(); g.moveTo(x0, yOf(f)); g.lineTo(x1, yOf(f)); g.stroke();
      }
      g.fillStyle = "#fff"; g.font = "bold 14px sans-serif";
      g.fillText(k.key, x0 + 2, MARGIN.top + 14);
    }
  }
}
