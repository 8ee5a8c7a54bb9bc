from lingting_server.streaming.stabilizer import Stabilizer
from lingting_server.wire.words import collapse_repeats, join_units, split_units


def test_units_split_words_and_cjk_characters():
    assert split_units("Hello, world") == ["Hello,", "world"]
    assert split_units("我认为 跑步ok") == ["我", "认", "为", "跑", "步", "ok"]
    assert join_units(["我", "认", "为", "ok", "go"]) == "我认为ok go"


def test_decoding_loops_are_collapsed():
    looped = "in being comparatively modern, " * 3 + "in being compar"
    assert collapse_repeats(looped) == "in being comparatively modern,"
    zh = "我认为跑步最重要的就是给我带来了身体健康。" * 3
    assert collapse_repeats(zh) == "我认为跑步最重要的就是给我带来了身体健康。"
    assert collapse_repeats("go " * 9) == "go go go go"


def test_genuine_repetition_is_kept():
    for text in ["hold, hold, hold", "T minus 10, 9, 8, 7, 6, 5, 4, 3, 2, 1", "one two three one two",
                 "ask not what your country can do for you, ask what you can do for your country"]:
        assert collapse_repeats(text) == text


def test_stabilizer_commits_agreed_prefix_and_never_takes_it_back():
    s = Stabilizer()
    assert s.update("and the") == ("", "and the")
    assert s.update("And Mr. John") == ("And", "And Mr. John")
    assert s.update("And Mr. John Dashwood") == ("And Mr. John", "And Mr. John Dashwood")
    # The decoder changes its mind about committed words: the caption does not.
    stable, text = s.update("An mister John Dashwood had")
    assert stable == "And Mr. John Dashwood"
    assert text == "And Mr. John Dashwood had"


def test_stabilizer_reset_between_utterances():
    s = Stabilizer()
    s.update("one two three")
    s.update("one two three four")
    s.reset()
    assert s.update("five") == ("", "five")


def test_stabilizer_grafts_after_a_reworded_prefix():
    s = Stabilizer()
    s.update("t minus 10, i n 8")
    s.update("t minus 10, i n 8, 7")
    stable, text = s.update("t minus 10, 9, 8, 7, 6")
    assert stable == "t minus 10, i n 8, 7,"       # committed words stay put, "7" now agreed
    assert text == "t minus 10, i n 8, 7, 6"     # and the new words are not lost
