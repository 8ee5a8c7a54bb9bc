import pytest

from lingting_server.text.alerts import AlertTracker, WatchPhrase, find_occurrences, parse_number
from lingting_server.wire.recognition import DecodeResult
from lingting_server.text.postprocess import TextWork, postprocess
from lingting_server.text.hotwords import Hotword, apply_hotwords

HOTWORDS = (Hotword("ComfyUI"), Hotword("Lingting"), Hotword("hold"), Hotword("达摩院"))


def test_hotword_fixes_spacing_case_and_near_misses():
    assert apply_hotwords("go into your comfy UI folder, the Comfy-UI.", HOTWORDS) == \
        "go into your ComfyUI folder, the ComfyUI."
    assert apply_hotwords("Welcome to Ling Ting.", HOTWORDS) == "Welcome to Lingting."
    assert apply_hotwords("Welcome to Lingding.", HOTWORDS) == "Welcome to Lingting."


def test_hotword_matches_what_sounds_the_same():
    assert apply_hotwords("your ConfUI folder", HOTWORDS) == "your ComfyUI folder"
    assert apply_hotwords("欢迎大家来体验达魔院推出的模型", HOTWORDS) == "欢迎大家来体验达摩院推出的模型"


def test_hotword_never_rewrites_text_far_from_it():
    for text in ["I am old and cold", "ask not what your country can do for you",
                 "then you go into your confi you eye folder", "欢迎大家来体验大模型",
                 "He began a confused complaint", "the conference, you see",
                 "Linking things is great"]:
        assert apply_hotwords(text, HOTWORDS) == text


def test_numbers_parse():
    assert [parse_number(t) for t in ["10", "ten", "twenty one", "oh", "十", "二十一", "九"]] == [10, 10, 21, 0, 10, 21, 9]


def test_watch_phrases_match_whole_words_and_numbers():
    watch = tuple(WatchPhrase.compile(p) for p in ["T minus <number>", "<number>", "hold", "倒计时<number>"])
    found = find_occurrences("T-minus 10, 9, 8. Hold, hold! the holder", watch)
    assert [(o.phrase, o.number) for o in found] == [
        ("T minus <number>", 10), ("<number>", 10), ("<number>", 9), ("<number>", 8), ("hold", None), ("hold", None)]
    found = find_occurrences("倒计时十，九", watch)
    assert [(o.phrase, o.number) for o in found] == [("倒计时<number>", 10), ("<number>", 10), ("<number>", 9)]
    assert find_occurrences("often ninety nine", (WatchPhrase.compile("ten"),)) == []


def found(text, watch):
    """What the text thread finds in a hypothesis (postprocess)."""
    return tuple(find_occurrences(text, watch))


def test_alerts_once_per_occurrence_then_confirmed_or_retracted():
    watch = (WatchPhrase.compile("<number>"), WatchPhrase.compile("hold"))
    tracker = AlertTracker()
    first = tracker.on_partial(found("T minus 10, 9", watch), 0, 1000)
    assert [(a.number, a.status) for a in first] == [(10, "detected"), (9, "detected")]
    assert tracker.on_partial(found("T minus 10, 9", watch), 0, 1200) == []              # no repeats
    later = tracker.on_partial(found("T minus 10, 9, 8", watch), 0, 1500)
    assert [(a.number, a.alert_id) for a in later] == [(8, "a3")]
    verdicts = tracker.on_final(found("T minus 10, 9, hold", watch), 0, 2000)
    assert [(a.alert_id, a.status) for a in verdicts] == [
        ("a3", "retracted"), ("a1", "confirmed"), ("a2", "confirmed"), ("a4", "confirmed")]


def test_a_missed_word_does_not_shift_later_alerts():
    watch = (WatchPhrase.compile("<number>"),)
    tracker = AlertTracker()
    assert [a.number for a in tracker.on_partial(found("T minus 10, i n 8, 7", watch), 0, 2400)] == [10, 8, 7]
    late = tracker.on_partial(found("T minus 10, 9, 8, 7, 6", watch), 0, 3000)
    assert [a.number for a in late] == [9, 6]                 # not 8 and 7 again
    verdicts = tracker.on_final(found("T minus 10 9 8 7 6", watch), 0, 3500)
    assert [(a.number, a.status) for a in verdicts] == [(n, "confirmed") for n in (10, 9, 8, 7, 6)]
    assert len({a.alert_id for a in verdicts}) == 5
    # The next utterance starts counting again.
    assert [a.number for a in tracker.on_partial(found("10", watch), 1, 3000)] == [10]


@pytest.mark.timeout(30)
def test_repeated_number_slots_do_not_backtrack_over_a_long_digit_run():
    # Before numbers were atomic, every split of the run between the slots was tried:
    # C(200, 6) ways here, hours on the event loop. Now each slot takes a number whole.
    watch = (WatchPhrase.compile("倒" + "<number>" * 7), WatchPhrase.compile("<number> " * 7))
    assert find_occurrences("倒" + "1" * 200 + "x", watch) == []
    assert find_occurrences("倒" + "一" * 200 + "x", watch) == []
    found = find_occurrences("倒1 2 3 4 5 6 7", watch)     # still matched where the numbers are separate
    assert sorted(o.phrase for o in found) == ["<number> " * 7, "倒" + "<number>" * 7]
    assert {o.number for o in found} == {1}


REDACT = frozenset({"numbers", "pci", "phone", "ssn"})


@pytest.mark.parametrize("kind", ["partial", "final"])
@pytest.mark.parametrize("said, secrets", [
    ("one zero zero zero one, nine oh two one oh, zero one eight zero three", ["10001", "90210", "1803", "9021"]),
    ("T minus 4111 1111 1111 1111", ["4111", "1111"]),
    ("call 555-123-4567 now", ["555", "123", "4567"]),
])
def test_an_alert_never_carries_a_masked_number(said, secrets, kind):
    watch = (WatchPhrase.compile("<number>"), WatchPhrase.compile("T minus <number>"), WatchPhrase.compile("call"))
    got = postprocess(TextWork(watch=watch, itn=False, redact=REDACT), kind, DecodeResult(said, "en"))
    assert got.occurrences, "alerts still fire on what was said"
    tracker = AlertTracker()
    alerts = (tracker.on_partial if kind == "partial" else tracker.on_final)(got.occurrences, 0, 1000)
    assert alerts
    for alert in alerts:
        assert alert.number is None or alert.phrase == "call", alert
        assert not any(secret in repr(alert) for secret in secrets), alert


def test_a_number_outside_every_masked_span_is_kept():
    watch = (WatchPhrase.compile("T minus <number>"),)
    got = postprocess(TextWork(watch=watch, itn=False, redact=frozenset({"pci"})), "final",
                      DecodeResult("T-minus 10 and counting, card 4111 1111 1111 1111", "en"))
    assert [(o.text, o.number) for o in got.occurrences] == [("t minus 10", 10)]
    masked = postprocess(TextWork(watch=(WatchPhrase.compile("card <number>"),), itn=False, redact=frozenset({"pci"})),
                         "final", DecodeResult("card 4111 1111 1111 1111", "en"))
    assert [(o.text, o.number) for o in masked.occurrences] == [("card [card]", None)]
