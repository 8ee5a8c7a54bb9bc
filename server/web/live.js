// /live: a supervisor's board of the tenant's live streams (WebSocket
// /v1/rooms): each stream's latest line; alerts kept at the top until
// acknowledged (acknowledgements stay in this browser).
import { apiKey, setStatus, showMessage } from "/web/common.js";

const $ = (id) => document.getElementById(id);
const KEY = apiKey();
const rooms = new Map();           // session id -> its card
const acked = new Set(JSON.parse(localStorage.getItem("lingting.acked") || "[]"));
let retry = 0;

function counts() {
  $("room-count").textContent = `(${rooms.size})`;
  const open = $("board-alerts").children.length;
  $("alert-count").textContent = open ? `(${open})` : "";
}

function card(info) {
  let li = rooms.get(info.session_id);
  if (!li) {
    li = document.createElement("li");
    li.className = "room";
    const link = document.createElement("a");
    link.href = `/watch/${encodeURIComponent(info.room)}`;
    const name = document.createElement("strong");
    const meta = document.createElement("span");
    meta.className = "meta";
    const line = document.createElement("p");
    line.className = "line";
    link.append(name, meta);
    li.append(link, line);
    rooms.set(info.session_id, li);
    $("rooms").append(li);
  }
  li.querySelector("strong").textContent = info.room;
  li.querySelector(".meta").textContent = ` ${info.language || ""}${info.viewers ? ` · ${info.viewers} watching` : ""}`;
  return li;
}

function setLine(li, e) {
  const line = li.querySelector(".line");
  line.textContent = (e.speaker ? `${e.speaker}: ` : "") + e.text;
  line.classList.toggle("partial", e.type === "partial");
}

function addAlert(e) {
  const id = `${e.session_id}/${e.alert_id}`;
  if (acked.has(id)) return;
  const existing = document.querySelector(`#board-alerts li[data-id="${CSS.escape(id)}"]`);
  if (e.status === "retracted") { existing?.remove(); counts(); return; }
  const li = existing || document.createElement("li");
  li.dataset.id = id;
  li.dataset.status = e.status;
  li.replaceChildren();
  const text = document.createElement("span");
  text.textContent = `${e.room}: “${e.text}” (${e.phrase}${e.confidence < 1 ? `, ${Math.round(e.confidence * 100)}%` : ""})`;
  const ack = document.createElement("button");
  ack.type = "button";
  ack.textContent = "Acknowledge";
  ack.addEventListener("click", () => {
    acked.add(id);
    localStorage.setItem("lingting.acked", JSON.stringify([...acked].slice(-500)));
    li.remove();
    counts();
  });
  li.append(text, ack);
  if (!existing) $("board-alerts").prepend(li);
  rooms.get(e.session_id)?.classList.add("alerting");
  counts();
}

function onEvent(e) {
  if (e.type === "rooms") {
    rooms.clear();
    $("rooms").replaceChildren();
    for (const info of e.rooms) {
      const li = card(info);
      if (info.last) setLine(li, info.last);
      for (const alert of info.alerts) addAlert({ ...alert, room: info.room, session_id: info.session_id });
    }
    setStatus("live");
    showMessage("");
    retry = 0;
  } else if (e.type === "room_opened") {
    card(e);
  } else if (e.type === "room_closed") {
    rooms.get(e.session_id)?.remove();
    rooms.delete(e.session_id);
  } else if (e.type === "partial" || e.type === "final") {
    const li = rooms.get(e.session_id);
    if (li && e.text) setLine(li, e);
  } else if (e.type === "alert") {
    addAlert(e);
  } else if (e.type === "error") {
    showMessage(e.message);
  }
  counts();
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const protocols = ["lingting.v1.json", ...(KEY ? [`lingting.key.${KEY}`] : [])];
  const ws = new WebSocket(`${scheme}://${location.host}/v1/rooms`, protocols);
  ws.onmessage = (m) => onEvent(JSON.parse(m.data));
  ws.onclose = (event) => {
    setStatus("reconnecting");
    if (event.code === 1006 && !retry) showMessage("Cannot reach the server (an API key may be needed: open /live?key=...).");
    setTimeout(connect, Math.min(15000, 1000 * 2 ** Math.min(retry++, 4)));
  };
}
connect();
