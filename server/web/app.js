// The live-caption page: wires LingtingClient events to the DOM.
import { LingtingClient } from "/client_js/lingting.js";
import { apiKey, clock, streamUrl } from "/web/common.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
if (params.get("overlay") === "1") document.body.classList.add("overlay");

const KEY = apiKey();   // read (and hidden from the address bar) at load
let client = null;
// What happened when, for people debugging and for the browser test.
const log = (window.lingtingLog = []);

function setStatus(text) { $("status").textContent = text; }
function showMessage(text) { $("message").textContent = text; $("message").hidden = !text; }

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

async function start() {
  showMessage("");
  const hotwords = $("hotwords").value.split(",").map((s) => s.trim()).filter(Boolean);
  client = new LingtingClient(streamUrl, { language: $("language").value, itn: $("itn").checked, hotwords,
                                          apiKey: KEY });
  const record = (type) => client.addEventListener(type, (e) => log.push({ type, at: performance.now(), ...e.detail }));
  ["audio_started", "state", "ready", "speech_started", "partial", "final", "alert", "error", "stopped", "disconnected", "reconnecting"].forEach(record);
  client.addEventListener("partial", (e) => renderPartial(e.detail));
  client.addEventListener("final", (e) => appendFinal(e.detail));
  client.addEventListener("alert", (e) => {
    if (e.detail.status === "detected") setStatus(`alert: ${e.detail.text}`);
  });
  client.addEventListener("level", (e) => { $("level").style.width = `${Math.min(100, e.detail.level * 140)}%`; });
  client.addEventListener("state", (e) => {
    const state = e.detail.state;
    setStatus(state === "streaming" ? "listening" : state);
    $("toggle").textContent = ["connecting", "streaming", "reconnecting"].includes(state) ? "Stop" : "Start";
    $("toggle").classList.toggle("recording", state === "streaming");
  });
  client.addEventListener("reconnecting", (e) =>
    showMessage(`Connection lost — reconnecting (attempt ${e.detail.attempt}) …`));
  client.addEventListener("ready", () => showMessage(""));
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
