"""Client for the Lingting streaming speech-recognition server."""

from .client import FileOptions, LingtingClient, LingtingError, StreamOptions
from .audio import decode_file, pcm_chunks

__all__ = ["FileOptions", "LingtingClient", "LingtingError", "StreamOptions", "decode_file", "pcm_chunks"]
