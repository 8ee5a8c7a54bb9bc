"""The live-caption page in a real browser: Debian's Chromium, driven by
Playwright, hears a real speech clip as its microphone and shows captions
from the real server."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request

import pytest
import srt

from lingting_testkit.corpus import error_rate, load_manifest

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Chromium not installed (make test installs it with apt: apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        yield p


def launch(p, wav=None):
    args = list(FLAGS)
    if wav is not None:
        args += ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={wav}%noloop"]
    return p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)


def wait_until(page, expression: str, timeout: float = 30000) -> None:
    """page.wait_for_function, but polled with page.evaluate: wait_for_function
    compiles its predicate with eval, which the pages' Content-Security-Policy
    forbids (as it should: the pages themselves must run under it)."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout / 1000:.0f} s waiting for: {expression}")
        page.wait_for_timeout(100)


def test_microphone_captions_in_the_page(browser, server, shared_audio, artifacts):
    (clip,) = [c for c in load_manifest() if c.file == "en/jfk.wav"]
    chromium = launch(browser, clip.path)
    try:
        page = chromium.new_context(viewport={"width": 900, "height": 640}).new_page()
        blocked = []          # the page must run under its own Content-Security-Policy
        page.on("console", lambda m: "Content Security Policy" in m.text and blocked.append(m.text))
        page.goto(server.http + "/")
        page.select_option("#language", "en")
        page.keyboard.press("Control+Enter")                     # the Fun-ASR WebUI shortcut
        wait_until(page, "window.lingtingLog.some(e => e.type === 'audio_started')", timeout=20000)
        # The clip is 11 s; wait for the final that covers its end.
        wait_until(page,
                   f"window.lingtingLog.some(e => e.type === 'final' && e.end_ms >= {int(clip.seconds * 1000) - 1500})",
                   timeout=60000)
        page.screenshot(path=str(artifacts / "browser_captions.png"), full_page=True)
        captions = page.evaluate("[...document.querySelectorAll('#finals li')].map(li => li.lastChild.textContent)")
        page.keyboard.press("Control+Enter")
        wait_until(page, "window.lingtingLog.some(e => e.type === 'state' && e.state === 'stopped')",
                   timeout=20000)
        log = page.evaluate("window.lingtingLog")
        assert not blocked, blocked
    finally:
        chromium.close()

    text = " ".join(captions)
    rate = error_rate([clip.transcript], [text], "en")
    kinds = [e["type"] for e in log]
    started = next(e for e in log if e["type"] == "audio_started")["at"]
    first_speech = next(e for e in log if e["type"] == "speech_started")
    first_partial = next(e for e in log if e["type"] == "partial")
    finals = [e for e in log if e["type"] == "final"]
    timings = {
        "speech_start_to_first_caption_s": round((first_partial["at"] - started - first_speech["start_ms"]) / 1000, 3),
        "speech_end_to_final_s": [round((f["at"] - started - f["end_ms"]) / 1000, 3) for f in finals],
        "wer": round(rate, 4), "captions": captions,
    }
    (artifacts / "browser_timings.json").write_text(json.dumps(timings, indent=2))
    print(json.dumps(timings, indent=2))
    assert rate <= 0.10, captions
    assert kinds.index("partial") < kinds.index("final"), "partials came before the final"
    assert (artifacts / "browser_captions.png").stat().st_size > 10_000


def test_denied_microphone_is_explained(browser, server):
    chromium = launch(browser)            # no fake device, no auto-accept: the prompt is refused
    try:
        page = chromium.new_context().new_page()
        page.goto(server.http + "/")
        page.click("#toggle")
        message = page.locator("#message")
        message.wait_for(state="visible", timeout=20000)
        assert "microphone" in message.inner_text().lower()
        assert page.locator("#toggle").inner_text() == "Start"
    finally:
        chromium.close()


def test_overlay_mode_and_phone_layout(browser, server, artifacts):
    chromium = launch(browser)
    try:
        page = chromium.new_context(viewport={"width": 390, "height": 760}).new_page()
        page.goto(server.http + "/")
        assert page.locator("#toggle").is_visible()
        box = page.locator("#toggle").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390          # fits a phone screen
        page.goto(server.http + "/?overlay=1")
        assert "overlay" in page.evaluate("document.body.className")
        assert not page.locator("#controls").is_visible()
        page.screenshot(path=str(artifacts / "browser_overlay.png"))
    finally:
        chromium.close()


def test_page_reconnects_after_the_server_restarts(browser, shared_audio):
    import socket

    from lingting_testkit.servers import start_server, stop_server
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    first = start_server("--port", str(port))
    chromium = launch(browser, shared_audio / "long" / "en_sense_and_sensibility_5utt.wav")
    second = None
    try:
        page = chromium.new_context().new_page()
        page.goto(first.http + "/")
        page.select_option("#language", "en")
        page.click("#toggle")
        wait_until(page, "window.lingtingLog.some(e => e.type === 'final' && e.text)", timeout=60000)
        first.process.kill()                                   # the server dies mid-stream
        wait_until(page, "window.lingtingLog.some(e => e.type === 'reconnecting')", timeout=20000)
        assert "reconnecting" in page.locator("#message").inner_text().lower()
        second = start_server("--port", str(port))
        wait_until(page, "window.lingtingLog.filter(e => e.type === 'ready').length >= 2", timeout=60000)
        wait_until(page,
                   "(() => { const log = window.lingtingLog;"
                   "  const r = log.map(e => e.type).lastIndexOf('ready');"
                   "  return log.slice(r).some(e => e.type === 'final' && e.text); })()", timeout=60000)
        assert page.locator("#message").is_hidden()
        log = page.evaluate("window.lingtingLog")
        page.click("#toggle")
    finally:
        chromium.close()
        for server in (first, second):
            if server:
                stop_server(server)
    ready_at = [i for i, e in enumerate(log) if e["type"] == "ready"][1]
    before = [e for e in log[:ready_at] if e["type"] == "final"]
    after = [e for e in log[ready_at:] if e["type"] == "final"]
    # The stream clock continues across the reconnect: no caption jumps back to 00:00.
    assert after[0]["start_ms"] > before[-1]["end_ms"]


def test_history_page_uploads_searches_exports_and_deletes(browser, server, shared_audio, artifacts, tmp_path):
    long_file = shared_audio / "long" / "en_sense_and_sensibility_5utt.wav"
    chromium = launch(browser)
    try:
        context = chromium.new_context(viewport={"width": 1000, "height": 900}, accept_downloads=True)
        page = context.new_page()
        page.goto(server.http + "/history")
        page.select_option("#language", "en")
        page.set_input_files("#files", [str(shared_audio / "en" / "jfk.wav"), str(long_file)])
        # Both files go through upload and transcription with a moving progress bar.
        wait_until(page, "document.querySelectorAll('#jobs li.done').length === 2", timeout=120000)
        assert page.eval_on_selector_all("#jobs progress", "bars => bars.map(b => b.value)") == [1, 1]
        page.screenshot(path=str(artifacts / "history_page.png"), full_page=True)
        rows = page.eval_on_selector_all("#sessions tbody tr", "rows => rows.map(r => r.innerText)")
        assert any("jfk.wav" in r for r in rows) and any(long_file.name in r for r in rows)
        # They went up as ordinary HTTP POSTs (/v1/files), not over a WebSocket.
        uploaded = page.eval_on_selector_all("#jobs li", "items => items.map(i => i.dataset.session)")
        for session_id in uploaded:
            with urllib.request.urlopen(f"{server.http}/v1/history/sessions/{session_id}", timeout=10) as r:
                assert json.loads(r.read())["client"]["subprotocol"] == "http.ndjson"

        page.fill("#search", "ask not what your country")
        page.click("#search-form button")
        page.wait_for_selector("#results li mark")
        assert "ask not what your country" in page.inner_text("#results mark").lower()
        session_id = page.get_attribute("#results li", "data-session")
        page.click("#results li")
        page.wait_for_selector("#detail:not([hidden]) #utterances li")
        assert "fellow americans" in page.inner_text("#utterances").lower()
        with page.expect_download() as download:
            page.click(".exports a[data-format=srt]")
        saved = tmp_path / "jfk.srt"
        download.value.save_as(saved)
        cues = list(srt.parse(saved.read_text()))
        assert cues and "country" in " ".join(c.content for c in cues).lower()

        page.on("dialog", lambda dialog: dialog.accept())
        assert page.query_selector(f"#sessions tr[data-session='{session_id}']")
        page.click("#delete")
        wait_until(page, f"!document.querySelector(\"#sessions tr[data-session='{session_id}']\")")
        assert page.is_hidden("#detail")
        with pytest.raises(Exception):      # gone from the server too
            urllib.request.urlopen(f"{server.http}/v1/history/sessions/{session_id}", timeout=10)
    finally:
        chromium.close()


def test_pages_work_with_an_api_key(browser, shared_audio, tmp_path):
    """With keys configured, the pages carry the key given once as ?key=:
    the live page as a WebSocket subprotocol, the history page as a header
    (and for downloads, which a plain link could not authenticate)."""
    from lingting_testkit.servers import start_server, stop_server
    key = "browser-" + "k" * 24
    keyed = start_server(env={"LINGTING_API_KEYS": f"web:{key}"})
    jfk = shared_audio / "en" / "jfk.wav"
    chromium = launch(browser, jfk)
    try:
        context = chromium.new_context(accept_downloads=True)
        page = context.new_page()
        page.goto(f"{keyed.http}/?key={key}")
        assert "key=" not in page.url                              # taken out of the address bar
        page.select_option("#language", "en")
        page.click("#toggle")
        wait_until(page, "window.lingtingLog.some(e => e.type === 'final' && e.text)", timeout=60000)
        page.click("#toggle")

        page.goto(f"{keyed.http}/history")                        # same tab: the key is remembered
        page.wait_for_selector("#sessions tbody tr")             # the live session, listed with the key
        page.set_input_files("#files", [str(jfk)])
        wait_until(page, "document.querySelectorAll('#jobs li.done').length === 1", timeout=60000)
        page.click("#jobs li.done .stage")
        page.wait_for_selector("#detail:not([hidden]) #utterances li")
        with page.expect_download() as download:
            page.click(".exports a[data-format=vtt]")
        saved = tmp_path / "jfk.vtt"
        download.value.save_as(saved)
        assert saved.read_text().startswith("WEBVTT") and "country" in saved.read_text().lower()

        fresh = context.new_page()                                # a new tab without the key is refused
        fresh.goto(f"{keyed.http}/history")
        fresh.locator("#message").wait_for(state="visible", timeout=20000)
        assert "API key" in fresh.inner_text("#message")
    finally:
        chromium.close()
        stop_server(keyed)


def test_countdown_clock_and_alerts_in_the_page(browser, server, artifacts, tmp_path):
    callouts = pytest.importorskip("lingting_testkit.callouts")
    if not callouts.have_espeak():
        pytest.skip("espeak-ng is not installed (make test installs it: apt-get install espeak-ng)")
    import wave
    import numpy as np
    rate, pause = 16000, np.zeros(16000 * 4, np.float32)
    audio = np.concatenate([pause[:8000], callouts.speak("T minus ten minutes and counting.", "en-us", 160), pause,
                            callouts.speak("We are holding at T minus five minutes.", "en-us", 160), pause])
    wav = tmp_path / "loop.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes((audio * 32767).astype("<i2").tobytes())
    chromium = launch(browser, wav)
    try:
        page = chromium.new_context(viewport={"width": 900, "height": 640}).new_page()
        page.goto(server.http + "/")
        page.select_option("#language", "en")
        page.fill("#watch", "hold, T minus <number>")
        page.check("#sounds-like")
        page.check("#countdown-on")
        page.click("#toggle")
        wait_until(page, "document.querySelector('#countdown').dataset.status === 'counting'", timeout=60000)
        first = page.text_content("#countdown-clock")
        page.wait_for_timeout(2200)
        later = page.text_content("#countdown-clock")           # it runs between callouts
        wait_until(page, "document.querySelector('#countdown').dataset.status === 'holding'", timeout=60000)
        held = page.text_content("#countdown-clock")
        page.wait_for_timeout(1500)
        still = page.text_content("#countdown-clock")
        alerts = page.evaluate("[...document.querySelectorAll('#alerts li')].map(li => li.textContent)")
        heard = page.evaluate("window.lingtingLog.filter(e => e.type === 'countdown' || e.type === 'final')"
                              ".map(e => e.type === 'final' ? e.text : `${e.status} ${e.t_minus_s}`)")
        page.screenshot(path=str(artifacts / "browser_countdown.png"), full_page=True)
        page.click("#toggle")
    finally:
        chromium.close()
    print(first, later, held, still, alerts, heard)

    def seconds(clock: str) -> int:
        h, m, s = clock.removeprefix("T−").split(":")
        return int(h) * 3600 + int(m) * 60 + int(s)
    # The clock is where the count is now (the final's delay taken off). "T minus ten
    # minutes" may come as two finals ("D minus 10" / "minutes and counting"): the clock
    # then starts at 10 s. Either way it runs, then stands at the hold.
    assert 595 <= seconds(first) <= 600 or 5 <= seconds(first) <= 10, first
    assert seconds(later) < seconds(first)
    assert held == still == "T−00:05:00"
    assert any(a.startswith("T minus <number>") for a in alerts), alerts


def test_the_watch_page_and_the_live_board(browser, server, shared_audio, artifacts):
    """A stream of real speech into a room with a watch phrase; an audience's
    /watch page (phone-sized, dark, larger text, by viewer token) and the
    supervisor's /live board show it; an alert stays on the board until
    acknowledged; the OBS overlay shows the last line on a transparent page."""
    import asyncio
    import threading

    from lingting_client import LingtingClient, StreamOptions
    from lingting_testkit.streams import wav_pcm

    pcm = wav_pcm(shared_audio / "en" / "jfk.wav")
    ready: dict = {}
    done = threading.Event()

    async def speak():
        client = LingtingClient(server.url)
        options = StreamOptions(language="en", room="briefing", watch=["country"])
        async for event in client.stream(pcm + bytes(64000), options):
            if event["type"] == "ready":
                ready.update(event)
        done.set()

    chromium = launch(browser)
    try:
        board = chromium.new_context(viewport={"width": 1000, "height": 700}).new_page()
        board.goto(server.http + "/live")
        wait_until(board, "document.getElementById('status').textContent === 'live'")
        speaker = threading.Thread(target=lambda: asyncio.run(speak()), daemon=True)
        speaker.start()
        deadline = time.monotonic() + 20
        while not ready and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.get("room") == "briefing", ready
        phone = chromium.new_context(viewport={"width": 390, "height": 760}, is_mobile=True).new_page()
        blocked = []
        for page in (board, phone):
            page.on("console", lambda m: "Content Security Policy" in m.text and blocked.append(m.text))
        phone.goto(f"{server.http}/watch/briefing#token={ready['viewer_token']}")
        overlay = chromium.new_context(viewport={"width": 1280, "height": 720}).new_page()
        overlay.goto(f"{server.http}/watch/briefing?overlay=1#token={ready['viewer_token']}")
        phone.click("#theme")                                   # dark
        phone.click("#larger")
        wait_until(phone, "document.getElementById('finals').textContent.toLowerCase().includes('country')",
                   timeout=60000)
        wait_until(board, "document.querySelectorAll('#board-alerts li').length > 0", timeout=30000)
        wait_until(board, "[...document.querySelectorAll('#rooms .line')].some(l => l.textContent)")
        board.screenshot(path=str(artifacts / "live_board.png"), full_page=True)
        alert_text = board.inner_text("#board-alerts li")
        assert "briefing" in alert_text and "country" in alert_text.lower()
        assert board.inner_text("#rooms strong") == "briefing"
        first = board.get_attribute("#board-alerts li", "data-id")
        board.click("#board-alerts li button")                 # acknowledged: it leaves the top, for good
        board.wait_for_timeout(1500)                           # (its confirmation may come meanwhile)
        assert first not in board.evaluate("[...document.querySelectorAll('#board-alerts li')].map(l => l.dataset.id)")
        wait_until(overlay, "document.getElementById('finals').children.length > 0", timeout=30000)
        overlay.screenshot(path=str(artifacts / "watch_overlay.png"))
        for element in ("document.documentElement", "document.body"):       # see-through in OBS
            assert overlay.evaluate(f"getComputedStyle({element}).backgroundColor") == "rgba(0, 0, 0, 0)"
        assert done.wait(60)
        wait_until(phone, "document.getElementById('status').textContent === 'ended'", timeout=30000)
        phone.screenshot(path=str(artifacts / "watch_phone.png"), full_page=True)
        assert phone.evaluate("document.body.classList.contains('dark')")
        assert phone.evaluate("getComputedStyle(document.getElementById('captions')).fontSize") == "28.8px"  # 1.8rem
        assert "ask not what your country" in phone.inner_text("#finals").lower()
        wait_until(board, "document.querySelectorAll('#rooms li').length === 0")   # the stream left the board
        assert not blocked, blocked
    finally:
        chromium.close()
