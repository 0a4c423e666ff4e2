// MagicFS console. Every file name, path, passage and reply is put on the
// page with textContent (never as HTML). The token lives in this tab's
// session storage and travels only in the Authorization header.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "magicfs-token";
let token = sessionStorage.getItem(KEY) || "";
let cwd = "/";
let limits = { max_write: 0 };

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function say(id, text, isError) {
  const p = $(id);
  p.textContent = text || "";
  p.classList.toggle("error", !!isError);
}

function human(n) {
  if (n === undefined || n === null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + units[i];
}

function join(dir, name) {
  return (dir.endsWith("/") ? dir : dir + "/") + name;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, opts = {}) {
  const headers = Object.assign({ "Authorization": "Bearer " + token }, opts.headers || {});
  const r = await fetch("/console/api/" + path, Object.assign({}, opts, { headers }));
  if (r.status === 401) {
    logout("The token was refused; log in again.");
    throw new ApiError(401, "not logged in");
  }
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { const j = await r.json(); if (j.error) msg = j.error; } catch (_) { /* not JSON */ }
    throw new ApiError(r.status, msg);
  }
  return r;
}

const getJson = async (path) => (await api(path)).json();
const postJson = async (path, body) =>
  (await api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })).json();

// ---- login ----
function logout(message) {
  token = "";
  sessionStorage.removeItem(KEY);
  $("app").hidden = true;
  $("login").hidden = false;
  say("login-error", message || "", !!message);
}

async function login(t) {
  token = t;
  try {
    const st = await getJson("status");
    sessionStorage.setItem(KEY, token);
    $("login").hidden = true;
    $("app").hidden = false;
    showVolume(st);
    await openDir("/");
  } catch (e) {
    if (e.status !== 401) logout("Cannot reach the server: " + e.message);
  }
}

function showVolume(st) {
  const v = st.volume || {};
  limits = v;
  $("volume").textContent = (v.kind || "") + " " + (v.root || "") + (v.read_only ? " (read-only)" : "");
}

// ---- tabs ----
function showTab(name) {
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const s of document.querySelectorAll(".tab")) s.hidden = s.id !== "tab-" + name;
  if (name === "status") refreshStatus();
  if (name === "compute") fillFileList();
}

// ---- files ----
async function openDir(path) {
  try {
    const j = await getJson("list?path=" + encodeURIComponent(path));
    cwd = j.path;
    $("cwd").textContent = cwd;
    const body = $("files").tBodies[0];
    body.replaceChildren();
    for (const e of j.entries) body.appendChild(fileRow(e));
    say("files-msg", j.entries.length + " entries" + (j.truncated ? " (cut)" : ""));
  } catch (e) {
    say("files-msg", e.message, true);
  }
}

function fileRow(e) {
  const tr = el("tr");
  tr.dataset.name = e.name;
  const name = el("td");
  const a = el("a", e.name, "name");
  a.title = e.path;
  a.addEventListener("click", () => (e.kind === "dir" ? openDir(e.path) : download(e.path, e.name)));
  name.appendChild(a);
  if (e.target) name.appendChild(el("span", " → " + e.target, "muted"));
  tr.appendChild(name);
  tr.appendChild(el("td", e.kind));
  tr.appendChild(el("td", e.kind === "file" ? human(e.size) : "", "num"));
  tr.appendChild(el("td", e.mtime));
  const act = el("td");
  const del = el("button", "Delete");
  del.type = "button";
  del.addEventListener("click", async () => {
    if (!confirm("Delete " + e.path + (e.kind === "dir" ? " and everything in it" : "") + "?")) return;
    try {
      await postJson("delete", { path: e.path, recursive: e.kind === "dir" });
      await openDir(cwd);
    } catch (err) { say("files-msg", err.message, true); }
  });
  act.appendChild(del);
  tr.appendChild(act);
  return tr;
}

async function download(path, name) {
  try {
    const r = await api("file?path=" + encodeURIComponent(path));
    const url = URL.createObjectURL(await r.blob());
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    say("files-msg", "downloaded " + path);
  } catch (e) { say("files-msg", e.message, true); }
}

async function upload() {
  const f = $("upload-input").files[0];
  if (!f) { say("files-msg", "choose a file first", true); return; }
  if (limits.max_write && f.size > limits.max_write) {
    say("files-msg", f.name + " is " + human(f.size) + ", over the upload limit of " + human(limits.max_write), true);
    return;
  }
  try {
    const path = join(cwd, f.name);
    const r = await api("file?path=" + encodeURIComponent(path), { method: "PUT", body: f });
    const e = await r.json();
    say("files-msg", "uploaded " + e.path + " (" + human(e.size) + ")");
    $("upload-input").value = "";
    await openDir(cwd);
  } catch (e) { say("files-msg", e.message, true); }
}

async function mkdir() {
  const name = $("newdir").value.trim();
  if (!name) return;
  try {
    await postJson("mkdir", { path: join(cwd, name) });
    $("newdir").value = "";
    await openDir(cwd);
  } catch (e) { say("files-msg", e.message, true); }
}

function up() {
  if (cwd === "/") return;
  const parent = cwd.replace(/\/[^/]*$/, "") || "/";
  openDir(parent);
}

// ---- search ----
async function search(ev) {
  ev.preventDefault();
  const q = $("query").value;
  const list = $("hits");
  list.replaceChildren();
  say("search-msg", "searching…");
  try {
    const j = await getJson("search?k=20&q=" + encodeURIComponent(q));
    for (const h of j.results) {
      const li = el("li");
      li.className = "hit";
      const a = el("a", h.path, "hit-path");
      a.addEventListener("click", () => download(h.path, h.path.split("/").pop()));
      li.appendChild(a);
      li.appendChild(el("span", h.score.toFixed(2), "score"));
      li.appendChild(el("div", h.passage, "passage"));
      list.appendChild(li);
    }
    say("search-msg", j.results.length ? j.results.length + " files" : "no matches");
  } catch (e) { say("search-msg", e.message, true); }
}

// ---- chat ----
async function chat(ev) {
  ev.preventDefault();
  const session = $("session").value.trim();
  const message = $("message").value;
  const t = $("transcript");
  t.appendChild(el("div", message, "turn user"));
  const reply = el("div", "", "turn assistant");
  t.appendChild(reply);
  $("message").value = "";
  $("send").disabled = true;
  say("chat-msg", "the model is answering…");
  try {
    const r = await api("chat", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ session, message }),
    });
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const raw = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let event = "message";
        let data = "";
        for (const line of raw.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).replace(/^ /, "");
        }
        if (!data) continue;
        const j = JSON.parse(data);
        if (event === "piece") reply.textContent += j.text;
        else if (event === "done") { reply.classList.add("complete"); say("chat-msg", "done"); }
        else if (event === "error") { reply.classList.add("error"); reply.textContent += j.error; say("chat-msg", j.error, true); }
      }
    }
  } catch (e) {
    reply.classList.add("error");
    say("chat-msg", e.message, true);
  } finally {
    $("send").disabled = false;
  }
}

// ---- generate ----
async function generate(ev) {
  ev.preventDefault();
  const out = $("gen-out");
  out.replaceChildren();
  say("gen-msg", "asking the model…");
  try {
    const kind = $("gen-kind").value;
    const j = await postJson("generate", {
      prompt: $("gen-prompt").value,
      path: $("gen-path").value,
      kind,
      fill: $("gen-fill").checked,
    });
    const files = kind === "tree" ? j.files : [j.file];
    for (const f of files) {
      const li = el("li");
      const a = el("a", f.path, "gen-file");
      a.addEventListener("click", () => download(f.path, f.path.split("/").pop()));
      li.appendChild(a);
      const prompt = f.prompt || (f.xattrs || {})["user.magic.prompt"] || "";
      li.appendChild(el("span", " — " + prompt + (f.size ? " (" + human(f.size) + ")" : ""), "muted"));
      out.appendChild(li);
    }
    say("gen-msg", files.length + " file(s)" + (kind === "tree" && !$("gen-fill").checked ? "; each is written on first read" : ""));
  } catch (e) { say("gen-msg", e.message, true); }
}

// ---- compute ----
async function fillFileList() {
  try {
    const j = await getJson("list?path=" + encodeURIComponent(cwd));
    const dl = $("c-files");
    dl.replaceChildren();
    for (const e of j.entries) if (e.kind === "file") { const o = el("option"); o.value = e.path; dl.appendChild(o); }
  } catch (_) { /* the list is a convenience */ }
}

async function compute(ev) {
  ev.preventDefault();
  const body = { path: $("c-path").value, op: $("c-op").value };
  if ($("c-imm").value !== "") body.imm = Number($("c-imm").value);
  if ($("c-window").value.trim()) body.window = $("c-window").value.trim();
  const tb = $("c-results").tBodies[0];
  tb.replaceChildren();
  say("c-summary", "computing…");
  try {
    const j = await postJson("compute", body);
    say("c-summary", j.op + ": " + human(j.bytes) + " in " + j.windows + " window(s), " +
      j.elapsed_ms.toFixed(2) + " ms, " + j.gbps.toFixed(2) + " GB/s");
    for (const r of j.results.slice(0, 500)) {
      const tr = el("tr");
      tr.appendChild(el("td", r.offset, "num"));
      tr.appendChild(el("td", r.length, "num"));
      tr.appendChild(el("td", r.value, "num"));
      tb.appendChild(tr);
    }
  } catch (e) { say("c-summary", e.message, true); }
}

// ---- status ----
const series = { throughput: [], passages: [], stored: [] };
let lastTraffic = null;

function push(name, v) {
  const s = series[name];
  s.push(v);
  if (s.length > 60) s.shift();
}

function chart(id, values) {
  const c = $(id);
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  if (!values.length) return;
  const max = Math.max(1, ...values);
  g.strokeStyle = "#3257d6";
  g.lineWidth = 2;
  g.beginPath();
  values.forEach((v, i) => {
    const x = (i / Math.max(1, values.length - 1)) * (c.width - 4) + 2;
    const y = c.height - 14 - (v / max) * (c.height - 20);
    if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
  });
  g.stroke();
  g.fillStyle = "#6b7385";
  g.font = "11px system-ui";
  g.fillText("max " + (max >= 1024 ? human(max) : max.toFixed(0)), 4, c.height - 2);
}

function card(k, v) {
  const d = el("div", null, "card");
  d.appendChild(el("div", k, "k"));
  d.appendChild(el("div", v, "v"));
  return d;
}

async function refreshStatus() {
  if ($("app").hidden) return;
  let st;
  try { st = await getJson("status"); } catch (_) { return; }
  showVolume(st);
  const s = st.search || {};
  const chat = st.chat || {};
  const backend = chat.backend || {};
  const gen = st.generation || {};
  const c = st.console || {};
  const traffic = (c.uploaded_bytes || 0) + (c.downloaded_bytes || 0) + (c.computed_bytes || 0);
  const now = Date.now();
  if (lastTraffic) push("throughput", (traffic - lastTraffic.bytes) / Math.max(0.001, (now - lastTraffic.at) / 1000));
  lastTraffic = { bytes: traffic, at: now };
  push("passages", s.passages || 0);
  push("stored", st.stored_bytes || 0);
  const cards = $("cards");
  cards.replaceChildren(
    card("Files", st.files !== undefined ? st.files : "—"),
    card("Logical size", human(st.logical_bytes)),
    card("Stored", human(st.stored_bytes)),
    card("Dedup × compression", st.total_ratio !== undefined ? st.total_ratio + "×" : "—"),
    card("Search model", s.model || "off"),
    card("Indexed", s.files_indexed !== undefined ? s.files_indexed + " files, " + s.passages + " passages" : "—"),
    card("Index queue", s.queued !== undefined ? s.queued + (s.indexing ? " (indexing)" : "") : "—"),
    card("Chat model", backend.state ? (typeof backend.state === "string" ? backend.state : JSON.stringify(backend.state)) : "off"),
    card("Chat replies", chat.replies !== undefined ? chat.replies : "—"),
    card("Files generated", gen.generated !== undefined ? gen.generated : "—"),
    card("Console traffic", human(traffic)),
  );
  chart("chart-throughput", series.throughput);
  chart("chart-index", series.passages);
  chart("chart-stored", series.stored);
  $("status-raw").textContent = JSON.stringify(st, null, 2);
}

// ---- start ----
document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (ev) => { ev.preventDefault(); login($("token").value); });
  $("logout").addEventListener("click", () => logout(""));
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));
  $("up").addEventListener("click", up);
  $("upload").addEventListener("click", upload);
  $("mkdir").addEventListener("click", mkdir);
  $("search-form").addEventListener("submit", search);
  $("chat-form").addEventListener("submit", chat);
  $("gen-form").addEventListener("submit", generate);
  $("compute-form").addEventListener("submit", compute);
  setInterval(() => { if (!$("tab-status").hidden) refreshStatus(); }, 1000);
  // A link such as /console/#token=T logs in at once; the fragment never
  // reaches the server and is removed from the address bar.
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    history.replaceState(null, "", location.pathname);
    login(decodeURIComponent(m[1]));
  } else if (token) {
    login(token);
  }
});
