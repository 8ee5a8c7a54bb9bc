// Type declarations for lingting.js (protocol v1, see docs/protocol.md).

export interface LingtingOptions {
  language?: "auto" | "en" | "zh" | "ja";
  partials?: boolean;
  itn?: boolean;
  hotwords?: Array<string | { phrase: string; boost?: number }>;
  /** Phrases to alert on; a map also matches sound-alikes ("fold" for "hold") or turns steering off. */
  watch?: Array<string | { phrase: string; sounds_like?: boolean | number; steer?: boolean }>;
  /** countdown events: a launch-style clock tracked from what is said. */
  countdown?: boolean;
  /** The name viewers watch this stream by (/watch/ROOM); ready.viewer_token lets a viewer in without a key. */
  room?: string;
  /** Label who speaks (S1, S2...) from the voice: finals get `speaker`, and `turns` when the speaker changed part-way. */
  diarize?: boolean;
  reconnect?: boolean;
  maxRetries?: number;
  backoffMs?: number;
  maxBackoffMs?: number;
}

export interface Word { word: string; start_ms: number; end_ms: number; probability: number; }

export interface PartialEvent {
  type: "partial"; utterance: number; start_ms: number; end_ms: number;
  text: string; stable_text: string; language: string | null; itn_text?: string;
}

export interface FinalEvent {
  type: "final"; utterance: number; start_ms: number; end_ms: number; reason: string;
  text: string; raw_text: string; language: string | null; words: Word[] | null; error?: string;
  /** diarize (or labelled channels): who said it; turns when the speaker changed part-way. */
  speaker?: string;
  turns?: Array<{ speaker: string; start_ms: number; end_ms: number; text: string }>;
}

export interface AlertEvent {
  type: "alert"; alert_id: string; status: "detected" | "confirmed" | "retracted";
  phrase: string; text: string; number: number | null; utterance: number; audio_ms: number;
  /** 1 for the phrase itself; below 1 for a sound-alike (watch sounds_like). */
  confidence: number;
}

export interface CountdownEvent {
  type: "countdown"; status: "counting" | "holding" | "resumed" | "zero";
  /** The clock at audio_ms; it runs down while counting or resumed. null: a hold before any time was said. */
  t_minus_s: number | null; utterance: number; text: string; audio_ms: number;
}

export interface ErrorEvent { type: "error"; code: string; message: string; fatal: boolean; }

export type ClientState = "idle" | "connecting" | "streaming" | "reconnecting" | "stopping" | "stopped";

export interface LingtingEventMap {
  ready: CustomEvent<{ session_id: string; model: string }>;
  speech_started: CustomEvent<{ utterance: number; start_ms: number }>;
  speech_ended: CustomEvent<{ utterance: number; start_ms: number; end_ms: number; reason: string }>;
  partial: CustomEvent<PartialEvent>;
  final: CustomEvent<FinalEvent>;
  alert: CustomEvent<AlertEvent>;
  countdown: CustomEvent<CountdownEvent>;
  error: CustomEvent<ErrorEvent>;
  stopped: CustomEvent<{ utterances: number; audio_ms: number }>;
  level: CustomEvent<{ level: number }>;
  /** performance.now() at which the audio of stream time 0 was captured. */
  audio_started: CustomEvent<{ at: number }>;
  state: CustomEvent<{ state: ClientState }>;
  disconnected: CustomEvent<{ code: number; reason: string; willRetry: boolean }>;
  reconnecting: CustomEvent<{ attempt: number; delayMs: number }>;
}

export declare class LingtingError extends Error {
  code: string;
}

export declare class LingtingClient extends EventTarget {
  constructor(url: string, options?: LingtingOptions);
  readonly url: string;
  state: ClientState;
  /** Added to event times after a reconnect, so the stream clock keeps growing. */
  offsetMs: number;
  startMicrophone(constraints?: MediaTrackConstraints): Promise<void>;
  start(stream: MediaStream): Promise<void>;
  stop(options?: { timeoutMs?: number }): Promise<void>;
  update(lists: { hotwords?: LingtingOptions["hotwords"]; watch?: LingtingOptions["watch"] }): void;
  flush(): void;
  addEventListener<K extends keyof LingtingEventMap>(type: K, listener: (ev: LingtingEventMap[K]) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
}

export interface TranscribeOptions {
  language?: "auto" | "en" | "zh" | "ja";
  itn?: boolean;
  hotwords?: LingtingOptions["hotwords"];
  apiKey?: string;
  /** Every server event: progress ({stage: "upload" | "transcribe", fraction...}), final, error. */
  onEvent?: (event: { type: string; [key: string]: unknown }) => void;
  signal?: AbortSignal;
}

export interface TranscribeResult {
  sessionId: string;
  finals: Array<{ utterance: number; start_ms: number; end_ms: number; text: string; raw_text: string }>;
  stopped: { utterances: number; audio_ms: number };
}

/** Offline transcription of a whole file over protocol v1's offline mode. */
export declare function transcribeFile(url: string, file: Blob & { name: string }, options?: TranscribeOptions): Promise<TranscribeResult>;
/** The same over HTTP (POST /v1/files, NDJSON events back); onUpload follows the upload. baseUrl: http(s)://host:port */
export declare function uploadFile(baseUrl: string, file: Blob & { name: string },
  options?: TranscribeOptions & { onUpload?: (sentBytes: number, totalBytes: number) => void }): Promise<TranscribeResult>;
