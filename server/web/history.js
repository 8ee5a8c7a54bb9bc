// The history page: upload files for offline transcription (with progress),
// browse and search stored sessions, download exports, delete.
import { uploadFile } from "/client_js/lingting.js";
import { apiKey, clock } from "/web/common.js";

const $ = (id) => document.getElementById(id);
const API = "/v1/history";
const KEY = apiKey();
const PAGE = 50;
let offset = 0;
let current = null;   // the session shown in detail

const when = (seconds) => new Date(seconds * 1000).toLocaleString();
function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = !text;
}

async function api(path, options = {}) {
  const response = await fetch(API + path, { ...options, headers: { ...(options.headers || {}), ...(KEY ? { "X-API-Key": KEY } : {}) } });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.message || `${response.status} ${response.statusText}`);
  }
  return response.status === 204 ? null : response.json();
}

// ---- upload -------------------------------------------------------------
function addJob(file) {
  const item = document.createElement("li");
  item.innerHTML = `<span class="name"></span> <progress max="1" value="0"></progress> <span class="stage">waiting</span>`;
  item.querySelector(".name").textContent = file.name;
  $("jobs").append(item);
  return {
    item,
    show(fraction, stage) {
      item.querySelector("progress").value = fraction;
      item.querySelector(".stage").textContent = stage;
    },
  };
}

async function transcribe(files) {
  const jobs = files.map((file) => [file, addJob(file)]);
  for (const [file, job] of jobs) {   // one at a time: the server batches within a file
    try {
      // An ordinary HTTP POST: the browser reports the upload's progress,
      // the server the transcription's (NDJSON events).
      const result = await uploadFile(location.origin, file, {
        language: $("language").value,
        apiKey: KEY,
        onUpload(sent, total) {
          const f = total ? sent / total : 0;
          job.show(0.1 * f, `uploading ${Math.round(100 * f)}%`);
        },
        onEvent(event) {
          if (event.type === "progress" && event.stage === "transcribe") {
            const f = event.fraction ?? 0;
            job.show(0.1 + 0.9 * f, `transcribing ${Math.round(100 * f)}%`);
          }
        },
      });
      job.show(1, `done: ${result.finals.length} utterances`);
      job.item.dataset.session = result.sessionId;
      job.item.classList.add("done");
      job.item.querySelector(".stage").onclick = () => openSession(result.sessionId);
    } catch (error) {
      job.show(0, `failed: ${error.message}`);
      job.item.classList.add("failed");
    }
    await loadSessions(true);
  }
}

$("files").addEventListener("change", (e) => { transcribe([...e.target.files]); e.target.value = ""; });
$("drop").addEventListener("dragover", (e) => e.preventDefault());
$("drop").addEventListener("drop", (e) => { e.preventDefault(); transcribe([...e.dataTransfer.files]); });

// ---- browse and search --------------------------------------------------
async function loadSessions(fromStart = false) {
  if (fromStart) offset = 0;
  try {
    const { sessions, total } = await api(`/sessions?limit=${PAGE}&offset=${offset}`);
    const body = $("sessions").querySelector("tbody");
    if (fromStart) body.replaceChildren();
    for (const s of sessions) {
      const row = document.createElement("tr");
      row.dataset.session = s.id;
      for (const text of [when(s.started_at), s.kind, s.filename || s.first_text || "—", s.utterances,
                          clock(s.audio_ms), s.status]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.append(cell);
      }
      row.onclick = () => openSession(s.id);
      body.append(row);
    }
    offset += sessions.length;
    $("more").hidden = offset >= total;
  } catch (error) {
    showMessage(`Could not load history: ${error.message}`);
  }
}
$("more").onclick = () => loadSessions();

$("search-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const q = $("search").value.trim();
  $("results").replaceChildren();
  if (!q) return;
  try {
    const { results } = await api(`/search?q=${encodeURIComponent(q)}`);
    if (!results.length) $("results").innerHTML = "<li>No matches.</li>";
    for (const r of results) {
      const item = document.createElement("li");
      item.dataset.session = r.session_id;
      const time = document.createElement("time");
      time.textContent = `${when(r.session_started_at)} · ${clock(r.start_ms)}`;
      item.append(time, " ", highlight(r.text, q));
      item.onclick = () => openSession(r.session_id);
      $("results").append(item);
    }
  } catch (error) {
    showMessage(`Search failed: ${error.message}`);
  }
});

function highlight(text, query) {
  const span = document.createElement("span");
  const at = text.toLowerCase().indexOf(query.toLowerCase());
  if (at < 0) { span.textContent = text; return span; }
  const mark = document.createElement("mark");
  mark.textContent = text.slice(at, at + query.length);
  span.append(text.slice(0, at), mark, text.slice(at + query.length));
  return span;
}

// ---- one session ----------------------------------------------------------
async function openSession(id) {
  try {
    const s = await api(`/sessions/${encodeURIComponent(id)}`);
    current = id;
    $("detail").hidden = false;
    $("detail-title").textContent = `${s.filename || s.kind} · ${when(s.started_at)} · ${s.status}`;
    for (const link of document.querySelectorAll(".exports a")) {
      link.href = `${API}/sessions/${encodeURIComponent(id)}/export?format=${link.dataset.format}`;
      link.download = `lingting-${id}.${link.dataset.format}`;
      link.onclick = KEY ? (e) => { e.preventDefault(); download(link); } : null;
    }
    renderUtterances(s);
    // Where its finals were pushed, and how that went (kept until retention removes the session).
    $("deliveries").hidden = !s.webhooks?.length;
    $("deliveries").querySelector("ul").replaceChildren(...(s.webhooks || []).map((d) => {
      const item = document.createElement("li");
      item.dataset.status = d.status;
      item.textContent = `${d.event} → ${d.url}: ${d.status}` + (d.attempts > 1 ? ` after ${d.attempts} attempts` : "") +
        (d.status !== "delivered" && d.last_error ? ` (${d.last_error})` : "");
      return item;
    }));
    $("detail").scrollIntoView({ behavior: "smooth" });
  } catch (error) {
    showMessage(`Could not open the session: ${error.message}`);
  }
}

// Utterances (as their speakers' turns when one changed part-way), with the
// names given to speaker labels; a field per label renames it.
function renderUtterances(s) {
  const names = s.speaker_names || {};
  const lines = s.utterances.flatMap((u) => (u.turns || [u]).map((t) => ({ ...u, ...t })))
    .filter((u) => u.text.trim());
  $("utterances").replaceChildren(...lines.map((u) => {
    const item = document.createElement("li");
    const time = document.createElement("time");
    time.textContent = clock(u.start_ms);
    item.append(time, " ");
    if (u.speaker) {   // labelled channels, or diarize: who said it
      const speaker = document.createElement("b");
      speaker.className = "speaker";
      speaker.textContent = `${names[u.speaker] || u.speaker}:`;
      item.append(speaker, " ");
    }
    item.append(u.text);
    return item;
  }));
  const labels = [...new Set(lines.map((u) => u.speaker).filter(Boolean))];
  $("speakers").hidden = !labels.length;
  $("speakers").querySelector("div").replaceChildren(...labels.map((label) => {
    const field = document.createElement("label");
    const input = document.createElement("input");
    input.value = names[label] || "";
    input.placeholder = label;
    input.dataset.label = label;
    input.addEventListener("change", async () => {
      try {
        const updated = await api(`/sessions/${encodeURIComponent(s.id)}`, {
          method: "PATCH", body: JSON.stringify({ speaker_names: { [label]: input.value.trim() } }),
          headers: { "Content-Type": "application/json" } });
        renderUtterances(updated);
      } catch (error) {
        showMessage(`Could not rename ${label}: ${error.message}`);
      }
    });
    field.append(`${label} `, input);
    return field;
  }));
}

// A plain link cannot carry the API key header: fetch, then save the blob.
async function download(link) {
  try {
    const response = await fetch(link.href, { headers: { "X-API-Key": KEY } });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    const url = URL.createObjectURL(await response.blob());
    const save = Object.assign(document.createElement("a"), { href: url, download: link.download });
    save.click();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    showMessage(`Download failed: ${error.message}`);
  }
}

$("delete").onclick = async () => {
  if (!current || !confirm("Delete this session and its transcript?")) return;
  try {
    await api(`/sessions/${encodeURIComponent(current)}`, { method: "DELETE" });
    $("detail").hidden = true;
    current = null;
    await loadSessions(true);
  } catch (error) {
    showMessage(`Delete failed: ${error.message}`);
  }
};

loadSessions(true);
window.lingtingHistory = { transcribe, loadSessions, openSession };
