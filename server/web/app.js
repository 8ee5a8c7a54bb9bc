// The live-caption page: wires LingtingClient events to the DOM.
import { LingtingClient } from "/client_js/lingting.js";
import { apiKey, clock, setStatus, showMessage, streamUrl } from "/web/common.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
if (params.get("overlay") === "1") {
  document.documentElement.classList.add("overlay");
  document.body.classList.add("overlay");
}

const KEY = apiKey();   // read (and hidden from the address bar) at load
let client = null;
// What happened when, for people debugging and for the browser test.
const log = (window.lingtingLog = []);


function renderPartial(detail) {
  const p = $("partial");
  p.textContent = "";
  const stable = document.createElement("span");
  stable.className = "stable";
  stable.textContent = detail.stable_text;
  p.append(stable, document.createTextNode(detail.text.slice(detail.stable_text.length)));
}

function appendFinal(detail) {
  $("partial").textContent = "";
  if (!detail.text) return;
  const li = document.createElement("li");
  li.dataset.utterance = detail.utterance;
  const time = document.createElement("time");
  time.textContent = clock(detail.start_ms);
  li.append(time, document.createTextNode(detail.text));
  $("finals").append(li);
  li.scrollIntoView({ block: "nearest" });
}

// The countdown clock: set by each countdown event, run down here between
// callouts while the count is running. The event's clock is at its audio_ms
// (stream time); the microphone's start maps that to now, so the final's
// delay does not hold the clock back.
const countdown = { t: null, status: null, at: 0, timer: null };
let audioStartedAt = null;

function countdownText(seconds) {
  if (seconds === null) return "T−––:––:––";
  const s = Math.max(0, Math.ceil(seconds));
  const pad = (n) => String(n).padStart(2, "0");
  return `T−${pad(Math.floor(s / 3600))}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
}

function renderCountdown() {
  const running = ["counting", "resumed"].includes(countdown.status);
  const t = countdown.t === null ? null : countdown.t - (running ? (performance.now() - countdown.at) / 1000 : 0);
  $("countdown-clock").textContent = countdownText(t);
  $("countdown-status").textContent = countdown.status || "";
  $("countdown").dataset.status = countdown.status || "";
}

function onCountdown(detail) {
  const at = audioStartedAt === null ? performance.now() : audioStartedAt + detail.audio_ms;
  Object.assign(countdown, { t: detail.t_minus_s, status: detail.status, at });
  $("countdown").hidden = false;
  renderCountdown();
  clearInterval(countdown.timer);
  if (["counting", "resumed"].includes(detail.status)) countdown.timer = setInterval(renderCountdown, 200);
}

function onAlert(detail) {
  const id = `alert-${detail.alert_id}`;
  let li = document.getElementById(id);
  if (detail.status === "retracted") { li?.remove(); return; }
  if (!li) {
    li = document.createElement("li");
    li.id = id;
    $("alerts").prepend(li);
  }
  li.dataset.status = detail.status;
  const sure = detail.confidence < 1 ? ` (sounds like, ${Math.round(detail.confidence * 100)} %)` : "";
  li.textContent = `${detail.phrase}: “${detail.text}”${sure}`;
}

async function start() {
  showMessage("");
  audioStartedAt = null;
  const list = (id) => $(id).value.split(",").map((s) => s.trim()).filter(Boolean);
  const hotwords = list("hotwords");
  const watch = $("sounds-like").checked ? list("watch").map((phrase) => ({ phrase, sounds_like: true })) : list("watch");
  client = new LingtingClient(streamUrl, { language: $("language").value, itn: $("itn").checked, hotwords, watch,
                                          countdown: $("countdown-on").checked, apiKey: KEY,
                                          room: $("room").value.trim() || undefined });
  const record = (type) => client.addEventListener(type, (e) => log.push({ type, at: performance.now(), ...e.detail }));
  ["audio_started", "state", "ready", "speech_started", "partial", "final", "alert", "countdown", "error", "stopped", "disconnected", "reconnecting"].forEach(record);
  client.addEventListener("partial", (e) => renderPartial(e.detail));
  client.addEventListener("final", (e) => appendFinal(e.detail));
  client.addEventListener("alert", (e) => {
    onAlert(e.detail);
    if (e.detail.status === "detected") setStatus(`alert: ${e.detail.text}`);
  });
  client.addEventListener("countdown", (e) => onCountdown(e.detail));
  client.addEventListener("audio_started", (e) => { audioStartedAt = e.detail.at; });
  client.addEventListener("level", (e) => { $("level").style.width = `${Math.min(100, e.detail.level * 140)}%`; });
  client.addEventListener("state", (e) => {
    const state = e.detail.state;
    setStatus(state === "streaming" ? "listening" : state);
    $("toggle").textContent = ["connecting", "streaming", "reconnecting"].includes(state) ? "Stop" : "Start";
    $("toggle").classList.toggle("recording", state === "streaming");
  });
  client.addEventListener("reconnecting", (e) =>
    showMessage(`Connection lost — reconnecting (attempt ${e.detail.attempt}) …`));
  client.addEventListener("ready", (e) => {
    showMessage("");
    if (e.detail.room) {      // a link for viewers: the token in the fragment stays out of server logs
      const link = `${location.origin}/watch/${encodeURIComponent(e.detail.room)}#token=${e.detail.viewer_token}`;
      $("share-link").href = link;
      $("share-link").textContent = link;
      $("share").hidden = false;
    }
  });
  client.addEventListener("disconnected", (e) => {
    if (!e.detail.willRetry) showMessage(`Connection to the server lost (code ${e.detail.code}). Press Start to try again.`);
  });
  client.addEventListener("error", (e) => showMessage(`Server: ${e.detail.message}`));
  try {
    await client.startMicrophone();
  } catch (err) {
    showMessage(err.message);
    setStatus("idle");
    client = null;
  }
}

async function stop() {
  const c = client;
  client = null;
  if (c) await c.stop();
  $("level").style.width = "0";
}

async function toggle() {
  $("toggle").disabled = true;
  try {
    if (client && !["stopped", "idle"].includes(client.state)) await stop();
    else await start();
  } finally {
    $("toggle").disabled = false;
  }
}

$("toggle").addEventListener("click", toggle);
document.addEventListener("keydown", (e) => {
  if (e.ctrlKey && e.key === "Enter") { e.preventDefault(); toggle(); }
});
