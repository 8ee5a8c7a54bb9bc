import numpy as np
import pytest

from lingting_server.streaming.audio import AudioDecoder, AudioFormatError


def test_s16_at_model_rate_is_passed_through():
    pcm = np.array([0, 16384, -32768, 32767], "<i2").tobytes()
    out = AudioDecoder("pcm_s16le", 16000).decode(pcm)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0, 0.5, -1, 32767 / 32768])


def test_f32_is_clipped_and_nan_rejected():
    d = AudioDecoder("pcm_f32le", 16000)
    np.testing.assert_allclose(d.decode(np.array([2.0, -0.25], "<f4").tobytes()), [1.0, -0.25])
    with pytest.raises(AudioFormatError):
        d.decode(np.array([np.nan], "<f4").tobytes())


def test_mulaw_g711_values():
    out = AudioDecoder("mulaw", 16000).decode(bytes([0x00, 0x80, 0xFF, 0x7F]))
    np.testing.assert_allclose(out * 32768, [-32124, 32124, 0, 0])


def test_alaw_g711_values():
    # ITU-T G.711 A-law: 0xD5 and 0x55 are the smallest steps either side of zero, 0xAA/0x2A the loudest.
    out = AudioDecoder("alaw", 16000).decode(bytes([0xD5, 0x55, 0xAA, 0x2A]))
    np.testing.assert_allclose(out * 32768, [8, -8, 32256, -32256])


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampling_keeps_duration(rate):
    d = AudioDecoder("pcm_s16le", rate)
    t = np.arange(rate) / rate
    pcm = (np.sin(2 * np.pi * 440 * t) * 10000).astype("<i2").tobytes()
    total = sum(len(d.decode(pcm[i:i + 3200])) for i in range(0, len(pcm), 3200)) + len(d.flush())
    assert abs(total - 16000) <= 2


def test_partial_sample_frames_are_rejected():
    with pytest.raises(AudioFormatError, match="not a whole number"):
        AudioDecoder("pcm_s16le", 16000).decode(b"\x00\x01\x02")
    with pytest.raises(AudioFormatError):
        AudioDecoder("pcm_f32le", 16000).decode(b"\x00" * 6)


def test_unknown_encoding():
    with pytest.raises(AudioFormatError):
        AudioDecoder("opus", 16000)
