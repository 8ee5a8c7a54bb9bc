"""Prometheus metrics of one server (its own registry: no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.streams = Gauge("lingting_streams_active", "Open streams", ["mode"], registry=r)
        self.connections = Counter("lingting_connections_total",
                                   "WebSocket handshakes by outcome (accepted or why refused)", ["outcome"], registry=r)
        self.audio_seconds = Counter("lingting_audio_seconds_total", "Audio received, in seconds", ["mode"], registry=r)
        self.finals = Counter("lingting_finals_total", "Finals sent", ["mode"], registry=r)
        self.final_latency = Histogram("lingting_final_latency_seconds",
                                       "End of an utterance detected -> its final sent (live streams)",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.decode_seconds = Histogram("lingting_decode_seconds", "Time in the engine per batch", ["kind"],
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram("lingting_queue_wait_seconds", "Time a request waited for its batch", ["kind"],
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("lingting_batch_size", "Requests per engine batch", ["kind"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("lingting_queue_depth", "Requests waiting, by lane", ["lane"], registry=r)
        self.partials_dropped = Counter("lingting_partials_dropped_total",
                                        "Partial decodes replaced by a newer one before they ran", registry=r)
        self.decode_failures = Counter("lingting_decode_failures_total", "Requests whose decode failed", registry=r)
        self.errors = Counter("lingting_errors_total", "Error events sent to clients, by code", ["code"], registry=r)
        self.worker_restarts = Gauge("lingting_worker_restarts", "Times the model worker was replaced", registry=r)
        self.viewers = Gauge("lingting_viewers", "Connected viewers of rooms and boards", registry=r)
        self.viewer_partials_dropped = Counter("lingting_viewer_partials_dropped_total",
                                               "Partials a slow viewer did not get (a newer one did)", registry=r)
        self.webhooks = Counter("lingting_webhook_attempts_total", "Webhook delivery attempts by outcome",
                                ["outcome"], registry=r)
        self.captions = Counter("lingting_caption_posts_total", "Captions sent to outputs, by type and outcome",
                                ["type", "outcome"], registry=r)
        self.history_writes = Histogram("lingting_history_write_seconds", "Time to store a final durably",
                                        buckets=LATENCY_BUCKETS, registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
