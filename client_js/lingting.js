// Lingting browser client: microphone (or any MediaStream) -> 16-bit PCM ->
// WebSocket protocol v1 (lingting.v1.json) -> caption events. No dependencies.
//
//   const client = new LingtingClient("ws://127.0.0.1:8765/v1/stream", { language: "en" });
//   client.addEventListener("partial", (e) => show(e.detail.text));
//   client.addEventListener("final", (e) => append(e.detail.text));
//   await client.startMicrophone();   // or: await client.start(video.captureStream())
//   ...
//   await client.stop();

const CHUNK_MS = 100;
const MAX_PENDING_MS = 5000;

// Runs on the audio thread: float samples -> Int16 chunks of CHUNK_MS, plus a level.
const WORKLET_SOURCE = `
class LingtingPcm extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.size = Math.round(sampleRate * ${CHUNK_MS} / 1000);
    this.buffer = new Int16Array(this.size);
    this.filled = 0;
    this.peak = 0;
  }
  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const n = channels[0].length;
    for (let i = 0; i < n; i++) {
      let v = 0;
      for (let c = 0; c < channels.length; c++) v += channels[c][i];
      v /= channels.length;
      const a = Math.abs(v);
      if (a > this.peak) this.peak = a;
      this.buffer[this.filled++] = Math.max(-32768, Math.min(32767, Math.round(v * 32767)));
      if (this.filled === this.size) {
        this.port.postMessage({ pcm: this.buffer.buffer, level: this.peak }, [this.buffer.buffer]);
        this.buffer = new Int16Array(this.size);
        this.filled = 0;
        this.peak = 0;
      }
    }
    return true;
  }
}
registerProcessor("lingting-pcm", LingtingPcm);
`;

// Browsers cannot put headers on a WebSocket: the API key rides as a subprotocol.
function subprotocols(apiKey) {
  return apiKey ? ["lingting.v1.json", `lingting.key.${apiKey}`] : ["lingting.v1.json"];
}

export class LingtingError extends Error {
  constructor(message, code) {
    super(message);
    this.name = "LingtingError";
    this.code = code;
  }
}

export class LingtingClient extends EventTarget {
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = {
      language: "auto", partials: true, itn: true, hotwords: [], watch: [], countdown: false,
      reconnect: true, maxRetries: 8, backoffMs: 500, maxBackoffMs: 8000, ...options,
    };
    this.state = "idle";            // idle | connecting | streaming | reconnecting | stopping | stopped
    this.offsetMs = 0;              // audio of earlier connections, so times keep growing across reconnects
    this._sentMs = 0;
    this._retries = 0;
    this._ws = null;
    this._audio = null;
    this._stopped = null;
    this._pending = [];
    this._droppedMs = 0;
  }

  async startMicrophone(constraints = {}) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new LingtingError("this browser cannot capture audio here (a secure page, https or localhost, is needed)", "no_media");
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, ...constraints },
      });
    } catch (err) {
      const denied = err && (err.name === "NotAllowedError" || err.name === "SecurityError");
      throw new LingtingError(
        denied ? "microphone access was denied: allow it in the browser's site settings"
               : `no microphone could be opened (${err && err.name ? err.name : err})`,
        denied ? "mic_denied" : "no_mic");
    }
    this._ownStream = stream;
    return this.start(stream);
  }

  async start(mediaStream) {
    if (this.state !== "idle" && this.state !== "stopped") throw new LingtingError("already started", "state");
    this.offsetMs = 0;
    this._sentMs = 0;
    this._retries = 0;
    this._pending = [];
    this._droppedMs = 0;
    await this._startAudio(mediaStream);
    this._connect();
  }

  async stop({ timeoutMs = 15000 } = {}) {
    if (this.state === "idle" || this.state === "stopped") return;
    this._sendPending();
    this._setState("stopping");
    this._stopAudio();
    const ws = this._ws;
    if (ws && ws.readyState === WebSocket.OPEN) {
      const stopped = new Promise((resolve) => { this._stopped = resolve; });
      ws.send(JSON.stringify({ type: "stop" }));
      await Promise.race([stopped, new Promise((r) => setTimeout(r, timeoutMs))]);
    }
    if (this._ws) this._ws.close(1000, "client stop");
    this._ws = null;
    this._setState("stopped");
  }

  update({ hotwords, watch } = {}) {
    const msg = { type: "update" };
    if (hotwords !== undefined) { msg.hotwords = hotwords; this.options.hotwords = hotwords; }
    if (watch !== undefined) { msg.watch = watch; this.options.watch = watch; }
    if (this._ws && this._ws.readyState === WebSocket.OPEN) this._ws.send(JSON.stringify(msg));
  }

  flush() {
    if (this._ws && this._ws.readyState === WebSocket.OPEN) this._ws.send(JSON.stringify({ type: "flush" }));
  }

  // ---- internals ---------------------------------------------------------
  _emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  _setState(state) {
    if (this.state !== state) {
      this.state = state;
      this._emit("state", { state });
    }
  }

  async _startAudio(mediaStream) {
    let ctx;
    try {
      ctx = new AudioContext({ sampleRate: 16000 });
    } catch (_) {
      ctx = new AudioContext();      // the server resamples whatever rate we declare
    }
    const url = URL.createObjectURL(new Blob([WORKLET_SOURCE], { type: "application/javascript" }));
    await ctx.audioWorklet.addModule(url);
    URL.revokeObjectURL(url);
    const source = ctx.createMediaStreamSource(mediaStream);
    const node = new AudioWorkletNode(ctx, "lingting-pcm");
    const sink = ctx.createGain();
    sink.gain.value = 0;              // keep the graph pulling without playing the audio back
    source.connect(node);
    node.connect(sink);
    sink.connect(ctx.destination);
    node.port.onmessage = (event) => this._onChunk(event.data);
    if (ctx.state === "suspended") await ctx.resume();
    this._audio = { ctx, source, node, sink, stream: mediaStream };
  }

  _stopAudio() {
    const audio = this._audio;
    this._audio = null;
    if (!audio) return;
    audio.node.port.onmessage = null;
    try { audio.source.disconnect(); audio.node.disconnect(); audio.sink.disconnect(); } catch (_) {}
    audio.ctx.close();
    if (this._ownStream) {
      this._ownStream.getTracks().forEach((t) => t.stop());
      this._ownStream = null;
    }
  }

  _onChunk({ pcm, level }) {
    this._emit("level", { level });
    // Audio is sent as it is captured, so never ahead of real time. Until the
    // server is ready (first connection, or a reconnect) up to MAX_PENDING_MS
    // of it waits, so a short outage loses no words; older audio is dropped.
    this._pending.push({ pcm, at: performance.now() });
    if (this._pending.length > MAX_PENDING_MS / CHUNK_MS) {
      this._pending.shift();
      this._droppedMs += CHUNK_MS;
    }
    this._sendPending();
  }

  _sendPending() {
    const ws = this._ws;
    if (!(this._ready && ws && ws.readyState === WebSocket.OPEN && this.state === "streaming")) return;
    for (const chunk of this._pending) {
      if (this._sentMs === 0 && this.offsetMs === 0) {
        // When the audio at stream time 0 was captured: pages measure latency from it.
        this._emit("audio_started", { at: chunk.at - CHUNK_MS });
      }
      ws.send(chunk.pcm);
      this._sentMs += CHUNK_MS;
    }
    this._pending = [];
  }

  _connect() {
    this._setState(this._retries ? "reconnecting" : "connecting");
    this._ready = false;
    let ws;
    try {
      ws = new WebSocket(this.url, subprotocols(this.options.apiKey));
    } catch (err) {
      this._emit("error", { code: "bad_url", message: String(err), fatal: true });
      this._setState("stopped");
      return;
    }
    this._ws = ws;
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      const o = this.options;
      ws.send(JSON.stringify({
        type: "start", sample_rate: this._audio ? this._audio.ctx.sampleRate : 16000, encoding: "pcm_s16le",
        language: o.language, partials: o.partials, itn: o.itn, hotwords: o.hotwords, watch: o.watch,
        ...(o.countdown ? { countdown: true } : {}),
        ...(o.room ? { room: o.room } : {}),
        ...(o.diarize ? { diarize: true } : {}),
      }));
    };
    ws.onmessage = (event) => this._onMessage(event.data);
    ws.onclose = (event) => this._onClose(ws, event);
  }

  _onMessage(data) {
    let event;
    try { event = JSON.parse(data); } catch (_) { return; }
    for (const key of ["start_ms", "end_ms", "audio_ms"]) {
      if (typeof event[key] === "number") event[key] += this.offsetMs;
    }
    if (event.type === "ready") {
      this._ready = true;
      this._retries = 0;
      this._setState("streaming");
      this._sendPending();
    }
    if (event.type === "stopped" && this._stopped) this._stopped(event);
    this._emit(event.type, event);
  }

  _onClose(ws, event) {
    if (ws !== this._ws) return;
    this._ws = null;
    if (this.state === "stopping" || this.state === "stopped") return;
    const retry = this.options.reconnect && this._retries < this.options.maxRetries && event.code !== 1008;
    this._emit("disconnected", { code: event.code, reason: event.reason, willRetry: retry });
    if (!retry) {
      this._stopAudio();
      this._setState("stopped");
      return;
    }
    // Times of the next connection continue after the audio already sent
    // (and any that had to be dropped while the server was away).
    this.offsetMs += this._sentMs + this._droppedMs;
    this._droppedMs = 0;
    this._sentMs = 0;
    const delay = Math.min(this.options.maxBackoffMs, this.options.backoffMs * 2 ** this._retries);
    this._retries += 1;
    this._setState("reconnecting");
    this._emit("reconnecting", { attempt: this._retries, delayMs: delay });
    setTimeout(() => { if (this.state === "reconnecting") this._connect(); }, delay);
  }
}

const FILE_CHUNK_BYTES = 256 * 1024;
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;   // pause reading the file while the socket is this far behind

/**
 * Offline transcription of a whole file (any container the server's FFmpeg
 * reads). Resolves with { sessionId, finals, stopped }; onEvent sees every
 * server event (progress, final, error...). The file is sent in slices, so
 * big files never sit in memory whole.
 */
export function transcribeFile(url, file, { language = "auto", itn, hotwords, apiKey, onEvent, signal } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, subprotocols(apiKey));
    const finals = [];
    let sessionId = null;
    let settled = false;
    const fail = (error) => {
      if (!settled) { settled = true; reject(error); }
      if (ws.readyState <= WebSocket.OPEN) ws.close();
    };
    signal?.addEventListener("abort", () => fail(new LingtingError("transcription cancelled", "cancelled")));
    ws.onopen = async () => {
      const start = { type: "start", mode: "offline", filename: file.name.slice(0, 255), file_bytes: file.size, language };
      if (itn !== undefined) start.itn = itn;
      if (hotwords?.length) start.hotwords = hotwords;
      ws.send(JSON.stringify(start));
      for (let offset = 0; offset < file.size && !settled; offset += FILE_CHUNK_BYTES) {
        while (ws.bufferedAmount > MAX_BUFFERED_BYTES && !settled) await new Promise((r) => setTimeout(r, 20));
        if (ws.readyState !== WebSocket.OPEN) return;
        ws.send(await file.slice(offset, offset + FILE_CHUNK_BYTES).arrayBuffer());
      }
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "stop" }));
    };
    ws.onmessage = (message) => {
      const event = JSON.parse(message.data);
      onEvent?.(event);
      if (event.type === "ready") sessionId = event.session_id;
      else if (event.type === "final") finals.push(event);
      else if (event.type === "error" && event.fatal) fail(new LingtingError(event.message, event.code));
      else if (event.type === "stopped" && !settled) { settled = true; resolve({ sessionId, finals, stopped: event }); }
    };
    ws.onerror = () => fail(new LingtingError(`cannot reach ${url}`, "connection"));
    ws.onclose = (event) => fail(new LingtingError(`connection closed (${event.code}${event.reason ? ": " + event.reason : ""})`, "connection"));
  });
}

/**
 * The same offline transcription over plain HTTP: the file is POSTed to
 * /v1/files and the server's events come back as NDJSON while it works.
 * onUpload(sentBytes, totalBytes) follows the upload (the browser's own
 * upload events); onEvent sees every server event. Resolves like
 * transcribeFile.
 */
export function uploadFile(baseUrl, file, { language = "auto", itn, hotwords, apiKey, onEvent, onUpload, signal } = {}) {
  return new Promise((resolve, reject) => {
    const params = new URLSearchParams({ filename: file.name.slice(0, 255), language });
    if (itn !== undefined) params.set("itn", String(itn));
    for (const h of hotwords || []) params.append("hotwords", h);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${baseUrl}/v1/files?${params}`);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    if (apiKey) xhr.setRequestHeader("X-API-Key", apiKey);
    const finals = [];
    let sessionId = null, stopped = null, failure = null, read = 0;
    const takeLines = () => {
      if (xhr.status !== 200) return;
      const text = xhr.responseText;
      let end;
      while ((end = text.indexOf("\n", read)) >= 0) {
        const line = text.slice(read, end);
        read = end + 1;
        if (!line) continue;
        const event = JSON.parse(line);
        onEvent?.(event);
        if (event.type === "ready") sessionId = event.session_id;
        else if (event.type === "final") finals.push(event);
        else if (event.type === "error" && event.fatal) failure = new LingtingError(event.message, event.code);
        else if (event.type === "stopped") stopped = event;
      }
    };
    xhr.upload.onprogress = (e) => onUpload?.(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onprogress = takeLines;
    xhr.onload = () => {
      if (xhr.status !== 200) {
        let body = {};
        try { body = JSON.parse(xhr.responseText); } catch { /* not ours */ }
        reject(new LingtingError(body.message || `HTTP ${xhr.status}`, body.error || "http"));
        return;
      }
      takeLines();
      if (stopped) resolve({ sessionId, finals, stopped });
      else reject(failure || new LingtingError("the transcription ended early", "connection"));
    };
    xhr.onerror = () => reject(new LingtingError(`cannot reach ${baseUrl}`, "connection"));
    xhr.onabort = () => reject(new LingtingError("transcription cancelled", "cancelled"));
    signal?.addEventListener("abort", () => xhr.abort());
    xhr.send(file);
  });
}
