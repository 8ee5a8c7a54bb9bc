"""Hallucination guards on synthetic results: repeated tails and unheard words
go, genuine repetition stays."""

from lingting_server.wire.recognition import DecodeResult, Word
from lingting_server.engines.guard import looks_hallucinated, repeated_tail, trim_hallucination
from lingting_server.wire.words import split_units

SENTENCE = "It was the first great sorrow of his life, it was not so much the loss of the cotton itself"


def words_of(text: str, start: int, ms_each: int) -> list[Word]:
    return [Word(w, start + i * ms_each, start + (i + 1) * ms_each, 0.9) for i, w in enumerate(text.split())]


def test_a_repeated_sentence_at_the_end_is_cut_even_when_the_copy_differs_a_little():
    copy = SENTENCE.replace("the cotton", "cotton")           # the second pass dropped a word
    result = trim_hallucination(DecodeResult(f"{SENTENCE}. {copy}.", "en"), 20000)
    assert result.text == SENTENCE + "." and result.extra["trimmed"]
    zh = "我认为跑步最重要的就是给我带来了身体健康"
    assert trim_hallucination(DecodeResult(zh + zh[:-1], "zh"), 9000).text == zh   # no spaces, cut short


def test_genuine_repetition_survives():
    for text in ("hold, hold, hold", "no no no", "no no no no no no", "T minus 10, 9, 8, 7, 6, 5, 4, 3, 2, 1",
                 "cleared for takeoff, cleared for takeoff", "one two three one two three",
                 "好的好的好的", SENTENCE):
        result = DecodeResult(text, "en")
        assert not looks_hallucinated(result, 30000) and trim_hallucination(result, 30000) is result, text
        assert repeated_tail(split_units(text)) == 0


def test_a_sentence_said_twice_at_speaking_pace_is_kept():
    # The copy's words take as long as the original's: backed by audio, so real speech.
    words = words_of(SENTENCE, 0, 300) + words_of(SENTENCE, 6000, 300)
    result = DecodeResult(f"{SENTENCE} {SENTENCE}", "en", words)
    assert not looks_hallucinated(result, 12500)


def test_words_with_no_audio_behind_them_are_dropped():
    heard = words_of("he was not an ill disposed young man", 0, 350)
    audio_ms = heard[-1].end_ms + 100
    unheard = [Word(w, audio_ms - 10, audio_ms - 10, 0.2) for w in "he was not an ill disposed".split()]
    result = DecodeResult("he was not an ill disposed young man he was not an ill disposed", "en", heard + unheard)
    assert looks_hallucinated(result, audio_ms)
    trimmed = trim_hallucination(result, audio_ms)
    assert trimmed.text == "he was not an ill disposed young man" and trimmed.words == heard
    # One short word at the end ("a") is ordinary: left alone.
    short = heard + [Word("a", audio_ms - 20, audio_ms - 5, 0.5)]
    assert not looks_hallucinated(DecodeResult("x", "en", short), audio_ms)
