"""Text work, pure functions on words: hotwords, ITN, watch phrases and alerts,
the countdown, redaction, how words sound, speaker labels, exports, and the text
work done on a decode result. Imports only the leaves (wire/)."""
