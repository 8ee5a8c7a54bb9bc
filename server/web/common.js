// Shared by the pages.

// An API key given once as ?key=... stays for this tab (sessionStorage) and
// leaves the address bar, so it is not bookmarked or shared by accident.
export function apiKey() {
  const params = new URLSearchParams(location.search);
  if (params.has("key")) {
    sessionStorage.setItem("lingting.apiKey", params.get("key"));
    params.delete("key");
    history.replaceState(null, "", location.pathname + (params.size ? `?${params}` : "") + location.hash);
  }
  return sessionStorage.getItem("lingting.apiKey") || undefined;
}

export const streamUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/stream`;

export function clock(ms) {
  const s = Math.floor(ms / 1000);
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

// The pages' status line and message box (#status, #message).
export function setStatus(text) { document.getElementById("status").textContent = text; }
export function showMessage(text) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.hidden = !text;
}
