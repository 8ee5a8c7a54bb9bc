"""Session options a platform carries for a call (Twilio's customParameters,
AudioHook's customConfig and inputVariables, mod_audio_fork's metadata and
URL query), mapped to protocol v1 start fields. Platforms often send only
strings: lists are comma-separated there, booleans "true"/"false"."""

from __future__ import annotations

from ...wire.errors import ErrorCode, ProtocolError
from ...wire.languages import LANGUAGES
from ..start import START_OPTIONS, StartConfig, parse_start

# The start fields a call may set, and how each is spelled as a platform's string (StartConfig's `phone`).
OPTION_FIELDS = {name: option.phone for name, option in START_OPTIONS.items() if option.phone}
KEY_FIELD = "api_key"                 # where a platform that cannot send headers puts the key


def language_code(value: str) -> str:
    """'en-US' -> 'en' (platforms send locales; Lingting takes languages)."""
    base = value.strip().split("-")[0].split("_")[0].lower()
    return base if base in LANGUAGES else value


def call_options(params, source: str) -> dict:
    """The start fields among a platform's parameters; anything else there is the caller's own business."""
    if not isinstance(params, dict):
        return {}
    out = {}
    for name, kind in OPTION_FIELDS.items():
        if name not in params:
            continue
        value = params[name]
        if kind == "list" and isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        elif kind == "bool" and isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        elif kind == "locale" and isinstance(value, str):
            value = language_code(value)
        out[name] = value
    return out


def call_config(fields: dict, source: str) -> StartConfig:
    """A live stream's settings from the platform's media format and the call's options."""
    try:
        return parse_start({"type": "start", **fields})
    except ProtocolError as exc:
        raise ProtocolError(exc.code, f"{source}: {exc.message}", fatal=True) from None


def no_binary(platform: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_MESSAGE, f"{platform} sends JSON text frames only")
