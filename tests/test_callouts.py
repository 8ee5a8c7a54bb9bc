"""Callouts: watch-phrase options, sound-alike matching, steering rules, the countdown clock."""

import pytest

from lingting_server.text.alerts import AlertTracker, find_occurrences, parse_watch, prompt_terms
from lingting_server.text.countdown import CountdownTracker
from lingting_server.engines.whisper import _for_language, _steered
from lingting_server.wire.errors import ProtocolError
from lingting_server.text.phonetic import sound_similarity, sounds_present


def found(text, watch):
    return [(o.phrase, o.text, o.number, o.confidence) for o in find_occurrences(text, parse_watch(watch))]


def test_sounds_like_ranks_what_a_radio_confuses_above_other_words():
    assert sound_similarity("fold", "hold") >= 0.85           # f / h: both breathy
    assert sound_similarity("d minus", "t minus") >= 0.9     # the E-set: letters that rhyme with "ee"
    assert sound_similarity("see minus", "t minus") >= 0.9   # a letter written as its name
    for word in ("old", "held", "told", "bold", "both", "oh"):   # common words that must not alert
        assert sound_similarity(word, "hold") < 0.85, word
    assert sound_similarity("about", "abort") < 0.85
    assert sound_similarity("到计时", "倒计时") == 1.0         # pinyin, toneless
    assert sound_similarity("展厅", "暂停") >= 0.85 > sound_similarity("方法", "暂停")


def test_exact_matching_stays_the_default():
    assert found("Fold, fold. We are folding at D minus 5.", ["hold", "T minus <number>"]) == []
    assert found("hold at T-5", ["hold", "T minus <number>"]) == [
        ("hold", "hold", None, 1.0), ("T minus <number>", "t minus 5", 5, 1.0)]   # Whisper's "T-5"
    assert found("T -5 min", ["T minus <number>"]) == [("T minus <number>", "t minus 5", 5, 1.0)]   # tiny.en's
    assert found("pages 3-5 and B-52", ["T minus <number>"]) == []


def test_sound_alikes_match_with_a_confidence_below_one():
    watch = [{"phrase": "hold", "sounds_like": True}, {"phrase": "T minus <number>", "sounds_like": True}]
    got = found("Fold, fold. We are folding at D minus twenty one minutes.", watch)
    assert got == [("hold", "fold", None, 0.9), ("hold", "fold", None, 0.9), ("hold", "folding", None, 0.85),
                   ("T minus <number>", "d minus twenty one", 21, 0.95)]
    assert found("hold on, the old man held it", watch) == [("hold", "hold", None, 1.0)]
    # A word's forms say the callout too ("we are holding"); other words that hold its letters do not.
    assert found("we are holding, he holds", watch[:1]) == [("hold", "holding", None, 0.95), ("hold", "holds", None, 0.95)]
    assert found("holders, holes, molding, building", watch[:1]) == []
    # A stricter tolerance drops the fold.
    assert found("fold", [{"phrase": "hold", "sounds_like": 0.95}]) == []
    assert found("到计时十秒", [{"phrase": "倒计时<number>秒", "sounds_like": True}]) == [
        ("倒计时<number>秒", "到计时十秒", 10, 1.0)]


def test_watch_maps_are_checked_and_echoed():
    watch = parse_watch(["abort", {"phrase": "hold", "sounds_like": True}, {"phrase": "T minus <number>", "steer": False}])
    assert [w.to_wire() for w in watch] == ["abort", {"phrase": "hold", "sounds_like": 0.85},
                                            {"phrase": "T minus <number>", "sounds_like": False, "steer": False}]
    assert prompt_terms(watch) == ("abort", "hold")           # an unsteered phrase stays out of the prompt
    assert prompt_terms(parse_watch(["T minus <number> seconds", "倒计时<number>秒", "<number>"])) == (
        "T minus", "seconds", "倒计时", "秒")
    for bad in ([{"phrase": "hold", "sounds_like": 0.2}], [{"phrase": "hold", "steer": "yes"}],
                [{"phrase": "hold", "loud": True}], [{"sounds_like": True}],
                [{"phrase": f"hold {i}", "sounds_like": True} for i in range(11)]):
        with pytest.raises(ProtocolError):
            parse_watch(bad)


def test_a_sound_alike_alert_is_retracted_when_the_final_disagrees():
    tracker = AlertTracker()
    watch = parse_watch([{"phrase": "hold", "sounds_like": True}])
    (detected,) = tracker.on_partial(tuple(find_occurrences("fold", watch)), 0, 500)
    assert detected.status == "detected" and detected.confidence == 0.9
    verdicts = tracker.on_final(tuple(find_occurrences("gold", watch)), 0, 900)
    assert [(a.status, a.alert_id) for a in verdicts] == [("retracted", detected.alert_id)]
    assert verdicts[0].to_wire()["confidence"] == 0.9


def test_a_prompted_decode_is_kept_only_where_the_plain_one_heard_something_like_it():
    hotwords = ("T minus", "abort", "hold")
    assert _steered("T minus 30 seconds", "see minus 30 seconds", hotwords)
    assert _steered("abort, abort", "Amort, amort", hotwords)
    assert not _steered("T minus, abort, second", "C minus per second", hotwords)   # "abort" over "per"
    assert not _steered("The weather is fine", "The weather is fine", hotwords)
    assert sounds_present("we are folding now", "holding", 0.85)
    assert _for_language(("hold", "暂停"), "en") == ("hold",) and _for_language(("hold", "暂停"), "zh") == ("hold", "暂停")


def clock_after(lines):
    tracker, out = CountdownTracker(), []
    for i, (text, audio_ms) in enumerate(lines):
        out += [(e.status, e.t_minus_s) for e in tracker.on_final(text, i, audio_ms)]
    return tracker, out


def test_countdown_states_from_a_launch_loop():
    tracker, events = clock_after([
        ("T minus 10 minutes and counting.", 1_000),
        ("The weather is fine.", 30_000),                        # nothing about the count: no event
        ("Hold. Hold. Hold.", 61_000),                           # stops the clock where it is
        ("We are holding at T minus 5 minutes.", 70_000),
        ("Resume the count.", 90_000),
        ("T minus 1 hour 30 minutes", 95_000),
        ("T minus 10, 9, 8, 7, 6, 5, 4, 3", 100_000),
        ("2, 1.", 102_000),
        ("Ignition. Liftoff.", 103_000),
    ])
    assert events == [("counting", 600), ("holding", 540), ("holding", 300), ("resumed", 300),
                      ("counting", 5400), ("counting", 3), ("counting", 1), ("zero", 0)]
    assert tracker.clock(200_000) == 0


def test_the_clock_runs_while_counting_and_stands_while_holding():
    tracker, _ = clock_after([("T minus 60 seconds and counting", 0)])
    assert tracker.clock(10_000) == 50
    tracker.on_final("holding", 0, 20_000)
    assert tracker.clock(30_000) == 40 and tracker.status == "holding"
    assert [(e.status, e.t_minus_s) for e in tracker.on_final("resuming the count", 1, 40_000)] == [("resumed", 40)]
    assert tracker.clock(45_000) == 35


def test_countdown_hears_a_loop_heard_a_little_wrong_and_in_chinese():
    _, events = clock_after([("D-10 minutes and counting.", 0), ("We are folding at T minus 5 minutes.", 1_000),
                             ("Three, two, one, lift off.", 2_000)])
    assert events == [("counting", 600), ("holding", 300), ("zero", 0)]
    _, events = clock_after([("倒计时十秒", 0), ("暂停", 2_000), ("恢复倒计时", 5_000), ("点火", 9_000)])
    assert events == [("counting", 10), ("holding", 8), ("resumed", 8), ("zero", 0)]
    _, events = clock_after([("The old man held on, and we told him.", 0), ("Hold", 1_000)])
    assert events == [("holding", None)]                           # a hold before any time was said
