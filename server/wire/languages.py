"""The languages Lingting knows (the protocol accepts, ITN writes out, the pages
offer); a model may know fewer, and says which (engine.languages)."""

AUTO = "auto"                       # let the model detect it
LANGUAGES = ("en", "zh", "ja")
