// /watch/ROOM: large captions of a live room for an audience (phone-sized
// screens, dark or light, adjustable text) or, with ?overlay=1, for an OBS
// browser source. The viewer token comes in the link's #token=... (a fragment
// never reaches server logs); an API key works too (?key=..., see common.js).
import { apiKey, setStatus, showMessage } from "/web/common.js";

const $ = (id) => document.getElementById(id);
const room = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");
const params = new URLSearchParams(location.search);
const token = new URLSearchParams(location.hash.slice(1)).get("token") || params.get("token");
const KEY = apiKey();
const MAX_LINES = 200;             // finals kept on screen
const prefs = JSON.parse(localStorage.getItem("lingting.watch") || "{}");
let retry = 0;
let closedFor = null;              // the room ended ("stopped"): no more reconnects

if (params.get("overlay") === "1") {      // an OBS browser source: nothing but the captions, see-through
  document.documentElement.classList.add("overlay");
  document.body.classList.add("overlay");
}
$("room-name").textContent = room;
document.title = `${room} — Lingting`;

function applyPrefs() {
  document.documentElement.style.setProperty("--watch-size", `${prefs.size || 1.6}rem`);
  document.body.classList.toggle("dark", prefs.dark ?? matchMedia("(prefers-color-scheme: dark)").matches);
  $("theme").textContent = document.body.classList.contains("dark") ? "Light" : "Dark";
  localStorage.setItem("lingting.watch", JSON.stringify(prefs));
}
$("smaller").addEventListener("click", () => { prefs.size = Math.max(1, (prefs.size || 1.6) - 0.2); applyPrefs(); });
$("larger").addEventListener("click", () => { prefs.size = Math.min(4, (prefs.size || 1.6) + 0.2); applyPrefs(); });
$("theme").addEventListener("click", () => { prefs.dark = !document.body.classList.contains("dark"); applyPrefs(); });
applyPrefs();


function speakerOf(e) { return e.speaker ? `${e.speaker}: ` : ""; }

function addFinal(e) {
  if (!e.text) return;
  const li = document.createElement("li");
  li.dataset.utterance = `${e.channel ?? ""}:${e.utterance}`;
  li.textContent = speakerOf(e) + e.text;
  $("finals").append(li);
  while ($("finals").children.length > MAX_LINES) $("finals").firstElementChild.remove();
  $("partial").textContent = "";
  li.scrollIntoView({ block: "end" });
}

function onEvent(e) {
  if (e.type === "room") {
    $("finals").replaceChildren();        // the backlog follows: it is the whole story so far
    setStatus("live");
    showMessage("");
    retry = 0;
  } else if (e.type === "final") {
    addFinal(e);
  } else if (e.type === "partial") {
    $("partial").textContent = speakerOf(e) + e.text;
  } else if (e.type === "room_closed") {
    closedFor = e.reason;
    setStatus(e.reason === "stopped" ? "ended" : "paused");
    showMessage(e.reason === "stopped" ? "The stream has ended." : "The speaker's connection dropped — waiting for it to come back…");
    $("partial").textContent = "";
  } else if (e.type === "error") {
    showMessage(e.message);
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const protocols = ["lingting.v1.json"];
  if (token) protocols.push(`lingting.token.${token}`);
  else if (KEY) protocols.push(`lingting.key.${KEY}`);
  const ws = new WebSocket(`${scheme}://${location.host}/v1/rooms/${encodeURIComponent(room)}/events`, protocols);
  let opened = false;
  ws.onopen = () => { opened = true; closedFor = null; };
  ws.onmessage = (m) => onEvent(JSON.parse(m.data));
  ws.onclose = () => {
    if (closedFor === "stopped") return;
    // Not started yet, a dropped speaker, a network blip: try again, more slowly each time.
    const wait = Math.min(15000, 1000 * 2 ** Math.min(retry++, 4));
    if (!opened) { setStatus("waiting"); showMessage(`Waiting for the stream “${room}” to go live…`); }
    setTimeout(connect, wait);
  };
}
connect();
