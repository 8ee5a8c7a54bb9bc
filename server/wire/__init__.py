"""The leaves: what every layer speaks. Server events and their wire form, protocol
errors, languages, word units, audio encodings and the model rate, endpointing
settings, decode requests and results. Imports nothing else of Lingting."""
