// Live values without reload: the console pushes every sensor's state as server-sent
// events; each element marked data-live / data-live-age / data-live-time names its field.
"use strict";
(function () {
  const live = document.querySelectorAll("[data-live], [data-live-age], [data-live-time]");
  const state = document.querySelector("[data-live-state]");
  if (!live.length || !window.EventSource) return;
  const pick = (data, path) => path.reduce((v, k) => (v == null ? v : v[k]), data);
  const num = (v) => (typeof v === "number" ? String(Number(v.toPrecision(6))) : v == null ? "—" : String(v));
  const ago = (now, t) => (t == null ? "never" : Math.max(0, Math.round(now - t)) + " s ago");
  const pad = (n) => String(n).padStart(2, "0");
  // Local time with its UTC offset, as the server writes it.
  const time = (t) => {
    if (t == null) return "—";
    const d = new Date(t * 1000);
    const off = -d.getTimezoneOffset();
    const zone = (off < 0 ? "-" : "+") + pad(Math.floor(Math.abs(off) / 60)) + ":" + pad(Math.abs(off) % 60);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + zone;
  };
  const source = new EventSource("/live");
  source.addEventListener("sensors", (event) => {
    const data = JSON.parse(event.data);
    for (const node of live) {
      if (node.dataset.live) {
        const value = pick(data.sensors, JSON.parse(node.dataset.live));
        const text = num(value);
        if (node.textContent !== text) node.textContent = text;
        if (node.classList.contains("health")) node.classList.toggle("bad", text !== "ok");
      } else if (node.dataset.liveAge) {
        node.textContent = ago(data.now, pick(data.sensors, JSON.parse(node.dataset.liveAge)));
      } else {
        node.textContent = time(pick(data.sensors, JSON.parse(node.dataset.liveTime)));
      }
    }
    if (state) state.textContent = "● live";
  });
  source.onerror = () => { if (state) state.textContent = "○ reconnecting"; };
})();
