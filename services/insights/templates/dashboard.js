// The dashboard: fetches the program's numbers from the API (the browser sends the token
// cookie set by the start page) and draws them as SVG bar charts, no library, no CDN.
const program = new URLSearchParams(window.location.search).get("program") || "";
const base = "/programs/" + encodeURIComponent(program);
const SVG = "http://www.w3.org/2000/svg";

function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// bars: [{label, value, shown, cls}]; max: the scale's top (1 for shares)
function barChart(container, bars, max, format) {
  const width = Math.max(500, 40 * bars.length + 20), height = 160, top = max || 1;
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  bars.forEach((bar, i) => {
    const x = 10 + i * 40, h = bar.value === null ? 0 : (bar.value / top) * 110;
    svg.appendChild(el("rect", {
      class: "bar " + (bar.cls || ""), x, y: 130 - h, width: 28, height: h,
      "data-label": bar.label, "data-value": bar.value === null ? "" : String(bar.value),
    }));
    svg.appendChild(el("text", { class: "value", x: x + 14, y: 125 - h, "text-anchor": "middle" },
      bar.value === null ? "-" : format(bar.value)));
    svg.appendChild(el("text", { class: "label", x: x + 14, y: 145, "text-anchor": "middle" },
      bar.short || bar.label));
  });
  if (!bars.length) {
    svg.appendChild(el("text", { class: "label", x: 10, y: 80 }, "nothing to show yet"));
  }
  container.replaceChildren(svg);
}

async function get(path) {
  const response = await fetch(base + path, { credentials: "same-origin" });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.detail || `${path}: HTTP ${response.status}`);
  }
  return response.json();
}

async function load() {
  document.getElementById("program").textContent = program;
  const [charts, equity, atRisk] = await Promise.all([
    get("/charts?weeks=12"), get("/equity"), get("/at-risk?limit=50"),
  ]);
  const weeks = charts.weeks;
  barChart(document.getElementById("sessions-held"), weeks.map((w) => ({
    label: w.week, short: w.week.slice(5), value: w.sessions_held,
  })), Math.max(1, ...weeks.map((w) => w.sessions_held)), (v) => String(v));
  barChart(document.getElementById("checkin-adherence"), weeks.map((w) => ({
    label: w.week, short: w.week.slice(5), value: w.checkin_adherence,
  })), 1, (v) => Math.round(v * 100) + "%");
  const health = Object.entries(charts.pairs_by_health);
  barChart(document.getElementById("health"), health.map(([name, n]) => ({
    label: name, value: n, cls: name,
  })), Math.max(1, ...health.map(([, n]) => n)), (v) => String(v));
  const groups = equity.filter((g) => !g.suppressed && g.session_adherence !== null);
  barChart(document.getElementById("equity"), groups.map((g) => ({
    label: `${g.attribute}=${g.group}`, short: g.group, value: g.session_adherence,
  })), 1, (v) => Math.round(v * 100) + "%");
  const body = document.querySelector("#at-risk tbody");
  body.replaceChildren(...atRisk.items.map((pair) => {
    const row = document.createElement("tr");
    row.dataset.pair = pair.pair_id;
    for (const value of [pair.pair_id, pair.mentor_id, pair.mentee_id, pair.risk_score,
      pair.reasons.join("; ")]) {
      const cell = document.createElement("td");
      cell.textContent = String(value);
      row.appendChild(cell);
    }
    return row;
  }));
  document.getElementById("at-risk-csv").href = base + "/at-risk?format=csv&limit=1000";
  document.getElementById("status").textContent = "Up to date";
  document.body.dataset.loaded = "true";
}

load().catch((error) => {
  document.getElementById("status").textContent = error.message +
    " (open the start page and enter a valid token)";
  document.getElementById("status").className = "error";
});
