"""What streams share: the batch collector and its text thread, transcript history
(SQLite or PostgreSQL), rooms and viewers' queues, API keys and limits, the upload
spool and file reading, metrics. No HTTP, no WebSockets: the edge serves them."""
