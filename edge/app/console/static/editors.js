// The console's editors, without a build step: a zone drawn by clicking on a camera's
// frame, the commissioning form's live preview, and the wait while the gateway reloads.
// Every page is complete without this script; it only saves the technician round trips.
"use strict";
(function () {
  const REFRESH_MS = 2000;

  // Zone editor: clicks on the frame become polygon corners in frame pixels.
  const svg = document.querySelector("svg.zone-editor");
  const form = document.getElementById("zone-form");
  if (svg && form) {
    const input = form.querySelector("input[name=polygon]");
    const nameInput = form.querySelector("input[name=name]");
    const drawing = svg.querySelector("polygon.drawing");
    const dots = svg.querySelector("g.dots");
    const count = document.getElementById("point-count");
    const zones = JSON.parse(svg.dataset.zones || "[]");
    let points = [];
    try { points = JSON.parse(input.value || "[]"); } catch (e) { points = []; }
    const SVG = "http://www.w3.org/2000/svg";
    const redraw = () => {
      drawing.setAttribute("points", points.map((p) => p.join(",")).join(" "));
      while (dots.firstChild) dots.removeChild(dots.firstChild);
      for (const [x, y] of points) {
        const dot = document.createElementNS(SVG, "circle");
        dot.setAttribute("cx", x); dot.setAttribute("cy", y); dot.setAttribute("r", 3);
        dot.setAttribute("class", "dot");
        dots.appendChild(dot);
      }
      input.value = JSON.stringify(points);
      if (count) count.textContent = points.length + (points.length === 1 ? " point" : " points");
      for (const zone of svg.querySelectorAll("polygon.zone")) {
        zone.classList.toggle("editing", zone.dataset.zone === nameInput.value.trim());
      }
    };
    svg.addEventListener("click", (event) => {
      const matrix = svg.getScreenCTM();
      if (!matrix) return;
      const at = new DOMPoint(event.clientX, event.clientY).matrixTransform(matrix.inverse());
      const box = svg.viewBox.baseVal;
      const x = Math.min(box.width, Math.max(0, Math.round(at.x)));
      const y = Math.min(box.height, Math.max(0, Math.round(at.y)));
      points.push([x, y]);
      redraw();
    });
    const undo = document.getElementById("undo-point");
    if (undo) undo.addEventListener("click", () => { points.pop(); redraw(); });
    const clear = document.getElementById("clear-points");
    if (clear) clear.addEventListener("click", () => { points = []; redraw(); });
    // Naming an existing zone (with nothing drawn yet) starts from its polygon.
    nameInput.addEventListener("change", () => {
      const zone = zones.find((z) => z.name === nameInput.value.trim());
      if (zone && !points.length) points = zone.polygon.map((p) => [p[0], p[1]]);
      redraw();
    });
    redraw();
  }

  // The camera's newest frame and counters, every few seconds.
  const frame = document.getElementById("frame");
  if (frame && frame.dataset.refresh) {
    const stateUrl = frame.dataset.refresh.replace(/frame\.jpg$/, "state");
    const cells = document.querySelectorAll("[data-cam]");
    const detections = document.getElementById("detections");
    const cell = (row, text) => { const td = document.createElement("td"); td.textContent = text; row.appendChild(td); };
    setInterval(async () => {
      if (document.hidden) return;
      try {
        const response = await fetch(stateUrl, { credentials: "same-origin" });
        if (!response.ok) return;
        const state = await response.json();
        for (const node of cells) {
          const key = node.dataset.cam;
          const value = state.counters[key];
          node.textContent = key === "online" ? (state.running ? (value ? "online" : "offline") : "not running")
            : value == null ? "—" : typeof value === "number" && !Number.isInteger(value) ? value.toFixed(1) : String(value);
        }
        if (detections) {
          detections.replaceChildren();
          for (const d of state.detections) {
            const row = document.createElement("tr");
            cell(row, d.class_name); cell(row, d.score.toFixed(2)); cell(row, d.box.join(", ")); cell(row, d.zones.join(", ") || "—");
            detections.appendChild(row);
          }
          if (!state.detections.length) {
            const row = document.createElement("tr");
            const td = document.createElement("td"); td.colSpan = 4; td.textContent = "none in the last frame";
            row.appendChild(td); detections.appendChild(row);
          }
        }
        frame.src = frame.dataset.refresh + "?t=" + Date.now();
      } catch (e) { /* the gateway is reloading: try again next time */ }
    }, REFRESH_MS);
  }

  // Commissioning: the preview follows the form and the newest payloads.
  const commission = document.getElementById("commission-form");
  const preview = document.getElementById("preview");
  if (commission && preview) {
    let timer = null;
    let sent = 0;
    const refresh = async () => {
      const body = new URLSearchParams(new FormData(commission));
      body.set("action", "preview");
      const mine = ++sent;
      try {
        const response = await fetch(commission.dataset.preview, { method: "POST", body, credentials: "same-origin" });
        if (response.ok && mine === sent) {
          const html = await response.text();
          const parsed = new DOMParser().parseFromString(html, "text/html");
          preview.replaceChildren(...parsed.body.childNodes);
        }
      } catch (e) { /* reloading: the next change or tick tries again */ }
    };
    const soon = () => { clearTimeout(timer); timer = setTimeout(refresh, 250); };
    commission.addEventListener("input", soon);
    commission.addEventListener("change", soon);
    setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
  }

  // After a save: go on once the gateway answers again with its new config.
  const waiting = document.getElementById("reloading");
  if (waiting && waiting.dataset.waitFor) {
    const target = waiting.dataset.waitFor;
    const poll = async () => {
      try {
        const response = await fetch(target, { credentials: "same-origin", redirect: "manual" });
        if (response.status === 200) { window.location.assign(target); return; }
      } catch (e) { /* not up yet */ }
      setTimeout(poll, 500);
    };
    setTimeout(poll, 800);
  }
})();
