// wandata review: the page's script. Every string from the dataset (captions, file names,
// reasons, notes) is written with textContent or as an attribute value, never as markup.
"use strict";

const $ = (id) => document.getElementById(id);
const CSRF = document.querySelector('meta[name="wandata-csrf"]').content;
const CSRF_HEADER = document.querySelector('meta[name="wandata-csrf-header"]').content;
const SCORES = ["motion", "sharpness", "brightness", "contrast", "text"];

const S = {
  view: "clips", offset: 0, limit: 60, total: 0, items: [], cur: -1, detail: null,
  selected: new Set(), order: "asc", maxChars: 2000, trigger: "", loading: null,
};

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k === "data") Object.assign(e.dataset, v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);   // strings become text nodes
  return e;
}

function toast(message, items) {
  const t = $("toast");
  t.replaceChildren(el("div", { text: message }), ...(items || []).slice(0, 8).map((i) => el("div", { class: "muted", text: i })));
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 6000);
}

async function api(method, url, body) {
  const opts = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (method === "POST") {
    opts.headers["Content-Type"] = "application/json";
    opts.headers[CSRF_HEADER] = CSRF;
    opts.body = JSON.stringify(body || {});
  }
  const resp = await fetch(url, opts);
  const data = await resp.json().catch(() => ({ ok: false, error: `${resp.status} ${resp.statusText}` }));
  if (!resp.ok) {
    toast(data.error || `request failed (${resp.status})`, data.items);
    throw new Error(data.error || String(resp.status));
  }
  return data;
}

const media = (id, what) => `/media/clip/${encodeURIComponent(id)}/${what}`;

// --- filters and the list -----------------------------------------------------------------

function option(value, label) { return el("option", { value, text: label }); }

async function loadFacets() {
  const f = await api("GET", "/api/facets");
  S.maxChars = f.max_chars; S.trigger = f.trigger;
  $("f-bucket").append(...f.buckets.map((b) => option(b, b)));
  $("f-reason").append(...f.reasons.map((r) => option(r.code, r.label)));
  $("f-source").append(...f.sources.map((s) => option(s.id, s.name)));
  $("f-score").append(...f.scores.map((s) => option(s, s)));
  $("f-sort").append(...f.sorts.map((s) => option(s, s.replace("_", " "))));
  showCounts(f.counts);
}

function params() {
  const p = new URLSearchParams();
  const status = S.view === "dropped" ? "dropped,failed" : $("f-status").value;
  const set = (k, v) => { if (v !== "" && v != null) p.set(k, v); };
  set("status", status);
  set("reviewed", S.view === "dropped" ? "" : $("f-reviewed").value);
  set("edited", S.view === "dropped" ? "" : $("f-edited").value);
  set("bucket", $("f-bucket").value);
  set("reason", $("f-reason").value);
  set("source", $("f-source").value);
  set("q", $("f-q").value.trim());
  const score = $("f-score").value;
  if (score) { set(`min_${score}`, $("f-min").value); set(`max_${score}`, $("f-max").value); }
  set("sort", $("f-sort").value);
  set("order", S.order);
  p.set("offset", S.offset); p.set("limit", S.limit);
  return p;
}

async function query(keepCur) {
  const ticket = (S.loading = {});
  const data = await api("GET", "/api/clips?" + params());
  if (ticket !== S.loading) return;        // a newer query was sent meanwhile
  S.items = data.items; S.total = data.total;
  if (S.offset >= S.total && S.total > 0) { S.offset = Math.max(0, Math.floor((S.total - 1) / S.limit) * S.limit); return query(); }
  showCounts(data.counts);
  renderGrid();
  const first = S.offset + (S.items.length ? 1 : 0);
  $("range").textContent = `${first}-${S.offset + S.items.length} of ${S.total}`;
  if (keepCur && S.cur >= 0 && S.cur < S.items.length) setCur(S.cur, false);
  else if (S.items.length && S.cur >= 0) setCur(Math.min(S.cur, S.items.length - 1), false);
  document.body.dataset.loaded = "1";
}

function showCounts(c) {
  for (const k of ["kept", "rejected", "edited", "not_reviewed", "stale", "dropped"]) {
    const b = $("n-" + k);
    if (b) b.textContent = String(c[k] ?? 0);
  }
  $("n-stale").parentElement.hidden = !c.stale;
}

function badge(text, cls) { return el("span", { class: "badge " + (cls || ""), text }); }

function card(item, i) {
  const c = el("div", { class: "card " + item.status, data: { id: item.clip_id, index: String(i) } });
  const pic = el("div", { class: "pic" });
  const img = el("img", { loading: "lazy", alt: "", src: S.view === "dropped" ? media(item.clip_id, "strip.jpg") : media(item.clip_id, "poster.jpg") });
  img.addEventListener("error", () => { img.replaceWith(el("div", { class: "nopic", text: item.has_file ? "no picture" : "no clip file" })); }, { once: true });
  pic.append(img);
  if (item.has_file && S.view !== "dropped") {
    c.addEventListener("mouseenter", () => hoverPlay(pic, item));
    c.addEventListener("mouseleave", () => hoverStop(pic));
  }
  const sel = el("input", { type: "checkbox", class: "sel", title: "select (s)" });
  sel.checked = S.selected.has(item.clip_id);
  sel.addEventListener("click", (ev) => { ev.stopPropagation(); toggleSelect(item.clip_id, sel.checked); });
  const badges = el("div", { class: "badges" }, badge(item.status, item.status), badge(item.bucket || "-"));
  if (item.edited) badges.append(badge("edited", "edited"));
  if (item.reviewed && item.status === "kept") badges.append(badge("reviewed", "reviewed"));
  if (item.stale.length) badges.append(badge("stale", "stale"));
  if (item.reason_label) badges.append(badge(item.reason_label, "reason"));
  const cap = el("div", { class: "cap", text: item.caption || "(no caption)" });
  const meta = el("div", { class: "meta muted", text: `${item.source_name} · shot ${item.shot} · w${item.window} · ${item.start.toFixed(2)}-${item.end.toFixed(2)} s` });
  c.append(sel, pic, badges, cap, meta);
  c.addEventListener("click", () => setCur(i, true));
  return c;
}

function hoverPlay(pic, item) {
  if (pic.querySelector("video")) return;
  const v = el("video", { muted: "", loop: "", playsinline: "", preload: "auto", src: media(item.clip_id, "video") });
  v.muted = true;
  pic.append(v);
  v.play().catch(() => {});
}

function hoverStop(pic) {
  const v = pic.querySelector("video");
  if (v) { v.pause(); v.removeAttribute("src"); v.load(); v.remove(); }
}

function renderGrid() {
  const g = $("grid");
  g.replaceChildren(...S.items.map(card));
  $("select-page").checked = S.items.length > 0 && S.items.every((it) => S.selected.has(it.clip_id));
  if (S.cur >= S.items.length) S.cur = S.items.length - 1;
}

function replaceItems(updated) {
  for (const u of updated) {
    const i = S.items.findIndex((it) => it.clip_id === u.clip_id);
    if (i < 0) continue;
    S.items[i] = u;
    const old = $("grid").children[i];
    const fresh = card(u, i);
    if (i === S.cur) fresh.classList.add("cur");
    old.replaceWith(fresh);
  }
}

// --- the current clip ---------------------------------------------------------------------

async function setCur(i, focusPanel) {
  if (i < 0 || i >= S.items.length) return;
  S.cur = i;
  for (const c of $("grid").children) c.classList.toggle("cur", Number(c.dataset.index) === i);
  const cardEl = $("grid").children[i];
  if (cardEl) cardEl.scrollIntoView({ block: "nearest" });
  await showDetail(S.items[i].clip_id);
}

async function showDetail(id) {
  const d = await api("GET", "/api/clip/" + encodeURIComponent(id));
  S.detail = d;
  $("panel-empty").hidden = true;
  $("panel-body").hidden = false;
  const box = $("player-box");
  if (d.has_file) {
    const v = el("video", { id: "player", controls: "", muted: "", loop: "", playsinline: "", autoplay: "", src: media(d.clip_id, "video") });
    v.muted = true;
    box.replaceChildren(v);
    v.play().catch(() => {});
    if (d.status !== "kept" && d.status !== "rejected") box.append(el("img", { class: "strip", alt: "", src: media(d.clip_id, "strip.jpg") }));
  } else {
    const img = el("img", { class: "strip", alt: "", src: media(d.clip_id, "strip.jpg") });
    img.addEventListener("error", () => img.replaceWith(el("p", { class: "muted", text: "no frame strip: the source file is gone or changed" })), { once: true });
    box.replaceChildren(img, el("p", { class: "muted", text: "No clip file: this window was dropped before it was encoded, so there is nothing to keep. The frames above come from the source." }));
  }
  const decidable = d.ingest_status === "kept" || d.can_overrule;
  $("keep").disabled = !decidable; $("reject").disabled = d.ingest_status !== "kept";
  $("keep").textContent = d.ingest_status === "kept" ? "Keep" : "Keep anyway";
  $("note").value = d.note || "";
  $("decision").textContent = d.decision ? `decided: ${d.decision}${d.stale.includes("status") ? " (stale: the clip changed since)" : ""}` : "not reviewed";
  const ta = $("caption-edit");
  ta.value = d.caption; ta.dataset.orig = d.caption;
  ta.disabled = !d.has_file;   // nothing trains on the caption of a clip without a file
  $("save-caption").disabled = !d.has_file;
  captionMeta();
  const facts = [
    ["clip", d.clip_id], ["status", d.status + (d.overruled ? " (kept over a drop)" : "")],
    ["reason", d.reason ? `${d.reason} [${d.reason_code || "-"}]` : ""],
    ["what to do", d.fix], ["captioner", d.captioner], ["source", d.source_path],
    ["source info", d.source ? `${d.source.size}, ${d.source.fps} fps, ${d.source.duration} s` : ""],
    ["shot", `#${d.shot}: ${d.shot_start.toFixed(2)}-${d.shot_end.toFixed(2)} s`],
    ["window", `#${d.window}: ${d.start.toFixed(2)}-${d.end.toFixed(2)} s, ${d.frames} frames at ${d.fps} fps`],
    ["bucket", `${d.bucket} (${d.width}x${d.height})`], ["file", d.path || "(none)"],
    ...SCORES.map((k) => [k, d.scores[k] < 0 ? "not measured" : String(d.scores[k])]),
    ["flags", (d.flags || []).join(", ")],
  ];
  $("facts").replaceChildren(...facts.filter(([, v]) => v).flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  $("neighbours").replaceChildren(...d.neighbours.map((n) => {
    const b = el("button", { type: "button", class: "link" + (n.clip_id === d.clip_id ? " here" : ""), text: `w${n.window} ${n.start.toFixed(2)}-${n.end.toFixed(2)} s: ${n.status}${n.reason_label ? " (" + n.reason_label + ")" : ""}` });
    b.addEventListener("click", () => {
      const i = S.items.findIndex((it) => it.clip_id === n.clip_id);
      if (i >= 0) setCur(i); else showDetail(n.clip_id);
    });
    return el("li", {}, b);
  }));
  $("history").replaceChildren(...d.history.slice().reverse().map((h) => el("li", { text: `${h.time} ${h.field}: ${h.old ?? "-"} -> ${h.new ?? "-"}${h.note ? " (" + h.note + ")" : ""}${h.undo ? " [undo]" : ""}` })));
}

function captionMeta() {
  const ta = $("caption-edit");
  const n = [...ta.value].length;
  const cnt = $("caption-count");
  cnt.textContent = `${n} / ${S.maxChars} characters`;
  cnt.classList.toggle("over", n > S.maxChars);
  const tr = $("caption-trigger");
  if (!S.trigger) { tr.textContent = "no trigger word set (--trigger)"; tr.className = "muted"; }
  else {
    const has = ta.value.includes(S.trigger);
    tr.textContent = `trigger "${S.trigger}" ${has ? "present" : "missing"}`;
    tr.className = has ? "ok" : "over";
  }
  ta.classList.toggle("dirty", ta.value !== ta.dataset.orig);
}

function after(result) {
  showCounts(result.counts);
  replaceItems(result.items);
  toast(result.entries ? `saved (${result.changed.length} clip${result.changed.length === 1 ? "" : "s"})` : "nothing changed");
}

async function decide(action, advance) {
  const d = S.detail;
  if (!d) return;
  const r = await api("POST", "/api/decide", { ids: [d.clip_id], action, note: $("note").value });
  after(r);
  if (advance && S.items[S.cur] && S.items[S.cur].clip_id === d.clip_id) await move(1);
  else await showDetail(d.clip_id);
}

async function saveCaption() {
  const d = S.detail, ta = $("caption-edit");
  if (!d) return;
  const r = await api("POST", "/api/caption", { ids: [d.clip_id], text: ta.value });
  after(r);
  ta.blur();
  await showDetail(d.clip_id);
}

async function undo() {
  const r = await api("POST", "/api/undo", {});
  toast(`undone (${r.changed.length} clip${r.changed.length === 1 ? "" : "s"})`);
  await query(true);
}

async function move(step) {
  const i = S.cur + step;
  if (i >= 0 && i < S.items.length) return setCur(i, true);
  if (step > 0 && S.offset + S.items.length < S.total) { S.offset += S.limit; S.cur = 0; await query(); return setCur(0); }
  if (step < 0 && S.offset > 0) { S.offset = Math.max(0, S.offset - S.limit); await query(); return setCur(S.items.length - 1); }
}

// --- selection and bulk actions -----------------------------------------------------------

function toggleSelect(id, on) {
  if (on === undefined) on = !S.selected.has(id);
  if (on) S.selected.add(id); else S.selected.delete(id);
  const c = [...$("grid").children].find((x) => x.dataset.id === id);
  if (c) c.querySelector(".sel").checked = on;
  $("bulk").hidden = S.selected.size === 0;
  $("n-selected").textContent = String(S.selected.size);
}

async function bulk(path, body) {
  if (!S.selected.size) return;
  const r = await api("POST", path, { ids: [...S.selected], ...body });
  after(r);
  await query(true);
}

// --- the dropped view ---------------------------------------------------------------------

async function loadSources() {
  const data = await api("GET", "/api/sources");
  const rows = data.items.filter((s) => s.status !== "kept" || s.reason_code);
  $("source-list").replaceChildren(...(rows.length ? rows.map((s) => el("div", { class: "source" },
    el("img", { loading: "lazy", alt: "", class: "strip", src: `/media/source/${encodeURIComponent(s.source_id)}/strip.jpg`,
                onerror: (ev) => ev.target.remove() }),
    el("div", {}, el("b", { text: s.name }), " ", badge(s.status, s.status), " ", badge(s.reason_label || s.reason_code, "reason")),
    el("div", { class: "muted", text: s.reason }),
    el("div", { class: "muted", text: s.path })))
    : [el("p", { class: "muted", text: "no source was dropped or failed" })]));
}

async function setView(view) {
  S.view = view; S.offset = 0; S.cur = -1;
  for (const t of document.querySelectorAll(".tab")) t.classList.toggle("on", t.dataset.view === view);
  $("dropped-sources").hidden = view !== "dropped";
  document.body.dataset.view = view;
  if (view === "dropped") await loadSources();
  await query();
}

// --- wiring -------------------------------------------------------------------------------

function refilter() { S.offset = 0; S.cur = -1; query(); }

function wire() {
  for (const id of ["f-status", "f-reviewed", "f-edited", "f-bucket", "f-reason", "f-source", "f-score", "f-sort"]) $(id).addEventListener("change", refilter);
  let timer;
  for (const id of ["f-q", "f-min", "f-max"]) $(id).addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refilter, 250); });
  $("f-order").addEventListener("click", () => { S.order = S.order === "asc" ? "desc" : "asc"; $("f-order").textContent = S.order; refilter(); });
  $("prev-page").addEventListener("click", () => { if (S.offset > 0) { S.offset = Math.max(0, S.offset - S.limit); S.cur = -1; query(); } });
  $("next-page").addEventListener("click", () => { if (S.offset + S.limit < S.total) { S.offset += S.limit; S.cur = -1; query(); } });
  for (const t of document.querySelectorAll(".tab")) t.addEventListener("click", () => setView(t.dataset.view));
  $("keep").addEventListener("click", () => decide("kept", false));
  $("reject").addEventListener("click", () => decide("rejected", false));
  $("save-caption").addEventListener("click", saveCaption);
  $("revert-caption").addEventListener("click", () => { const ta = $("caption-edit"); ta.value = ta.dataset.orig; captionMeta(); });
  $("caption-edit").addEventListener("input", captionMeta);
  $("undo").addEventListener("click", undo);
  $("help-btn").addEventListener("click", () => { $("help").hidden = !$("help").hidden; });
  $("select-page").addEventListener("change", (ev) => { for (const it of S.items) toggleSelect(it.clip_id, ev.target.checked); });
  $("bulk-keep").addEventListener("click", () => bulk("/api/decide", { action: "kept", note: $("bulk-note").value }));
  $("bulk-reject").addEventListener("click", () => bulk("/api/decide", { action: "rejected", note: $("bulk-note").value }));
  $("bulk-template-apply").addEventListener("click", () => bulk("/api/caption", { template: $("bulk-template").value }));
  $("bulk-replace-apply").addEventListener("click", () => bulk("/api/caption", { find: $("bulk-find").value, replace: $("bulk-replace").value }));
  $("bulk-clear").addEventListener("click", () => { for (const id of [...S.selected]) toggleSelect(id, false); });
  document.addEventListener("keydown", onKey);
}

function onKey(ev) {
  const t = ev.target;
  const typing = t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement;
  if (typing) {
    if (t.id === "caption-edit" && ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); saveCaption(); }
    else if (ev.key === "Escape") {
      if (t.id === "caption-edit") { t.value = t.dataset.orig; captionMeta(); }
      t.blur();
    }
    return;
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const keys = {
    j: () => move(1), ArrowDown: () => move(1), ArrowRight: () => move(1),
    k: () => move(-1), ArrowUp: () => move(-1), ArrowLeft: () => move(-1),
    a: () => (!$("keep").disabled ? decide("kept", true) : null),
    x: () => (!$("reject").disabled ? decide("rejected", true) : null),
    e: () => { const ta = $("caption-edit"); if (S.detail) { ta.focus(); ta.setSelectionRange(ta.value.length, ta.value.length); } },
    u: () => undo(),
    s: () => { if (S.items[S.cur]) toggleSelect(S.items[S.cur].clip_id); },
    n: () => $("next-page").click(), p: () => $("prev-page").click(),
    "/": () => $("f-q").focus(),
    "?": () => { $("help").hidden = !$("help").hidden; },
    Escape: () => { $("help").hidden = true; },
    " ": () => { const v = $("player"); if (v) { if (v.paused) v.play(); else v.pause(); } },
  };
  const f = keys[ev.key];
  if (f) { ev.preventDefault(); f(); }
}

document.addEventListener("DOMContentLoaded", async () => {
  wire();
  await loadFacets();
  await query();
});
