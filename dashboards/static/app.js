// Blotter live refresh: poll the JSON endpoint with the page's own filters, redraw the rows,
// flash the alerts that were not there before.  No library: this file is inlined in the page.
(function () {
  const table = document.getElementById("blotter");
  if (!table) return;
  const body = table.querySelector("tbody");
  const count = document.getElementById("alert-count");
  const stamp = document.getElementById("refreshed");
  const pause = document.getElementById("live");
  const triage = document.getElementById("triage-summary");
  const every = Number(table.dataset.refreshMs || 5000);
  const root = table.dataset.root || "";
  let seen = new Set([...body.querySelectorAll("tr[data-id]")].map(r => r.dataset.id));
  const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const tags = xs => (xs || []).map(x => `<span class="tag">${esc(x)}</span>`).join("");
  const owners = xs => (xs || []).map(x => `<a class="tag" href="${root}/owner/${encodeURIComponent(x)}">${esc(x)}</a>`).join("");
  function row(a, fresh) {
    return `<tr data-id="${esc(a.alert_id)}" class="sev-row-${esc(a.severity)}${fresh ? " fresh" : ""}">` +
      `<td><input type="checkbox" name="ids" value="${esc(a.alert_id)}" form="export-form"></td>` +
      `<td class="mono">${esc(a.start)}</td><td class="num">${esc(a.duration_s.toFixed(1))}</td>` +
      `<td><span class="sev sev-${esc(a.severity)}">${esc(a.severity)}</span></td>` +
      `<td class="num">${esc(a.score.toFixed(1))}</td>` +
      `<td class="num triage" title="${esc(a.triage_reason)}">${a.triage == null ? "" : esc(a.triage.toFixed(2))}</td>` +
      `<td>${esc(a.detector)}</td><td>${esc(a.instrument)}</td>` +
      `<td>${tags(a.venues)}</td><td>${owners(a.owners)}</td>` +
      `<td><span class="status status-${esc(a.status)}">${esc(a.status_label)}</span></td>` +
      `<td class="num">${esc(a.evidence_count)}</td>` +
      `<td class="wrap"><a href="${root}/alert/${esc(a.alert_id)}">${esc(a.summary)}</a></td></tr>`;
  }
  async function refresh() {
    if (pause && !pause.checked) return;
    try {
      const r = await fetch(root + "/api/alerts" + window.location.search, {headers: {"Accept": "application/json"}});
      if (!r.ok) throw new Error(r.status);
      const data = await r.json();
      const checked = new Set([...body.querySelectorAll("input[name=ids]:checked")].map(i => i.value));
      body.innerHTML = data.rows.map(a => row(a, !seen.has(a.alert_id))).join("");
      body.querySelectorAll("input[name=ids]").forEach(i => { i.checked = checked.has(i.value); });
      seen = new Set(data.rows.map(a => a.alert_id));
      if (count) count.textContent = data.total;
      if (triage && data.triage) {
        triage.textContent = "triage: " + data.triage.summary;
        triage.classList.toggle("learnt", data.triage.learnt_from > 0);
      }
      if (stamp) stamp.textContent = "refreshed " + data.generated;
    } catch (e) {
      if (stamp) stamp.textContent = "refresh failed (" + e.message + "), retrying";
    }
  }
  setInterval(refresh, every);
})();
