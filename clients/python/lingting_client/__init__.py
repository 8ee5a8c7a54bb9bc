"""Client for the Lingting streaming speech-recognition server."""

from .client import LingtingClient, LingtingError, StreamOptions
from .audio import decode_file, pcm_chunks

__all__ = ["LingtingClient", "LingtingError", "StreamOptions", "decode_file", "pcm_chunks"]
