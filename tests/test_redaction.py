"""Redaction of card numbers, SSNs, phone numbers and e-mail addresses (text only)."""

import time

import pytest

from lingting_server.wire.recognition import DecodeResult, Word
from lingting_server.wire.errors import ProtocolError
from lingting_server.text.postprocess import TextWork, postprocess
from lingting_server.text.redaction import parse_redact, redact, redact_words

ALL = frozenset({"pci", "ssn", "phone", "email"})


@pytest.mark.parametrize("text, expected", [
    ("My card is 4111 1111 1111 1111, thanks.", "My card is [card], thanks."),
    ("4111-1111-1111-1111", "[card]"),
    ("it's 4111111111111111 expiring 12 25", "it's [card] expiring 12 25"),
    ("four one one one one one one one one one one one one one one one", "[card]"),
    ("Four, one, one, one, one, one, one, one, one, one, one, one, one, one, one, one.", "[card]."),
    ("card 5500 0000 0000 0004 and amex 3782 822463 10005", "card [card] and amex [card]"),
    ("卡号是四一一一一一一一一一一一一一一一", "卡号是[card]"),
    # Not Luhn-valid (one digit misheard): still 16 digits in a row, masked.
    ("order 4111 1111 1111 1112 shipped", "order [card] shipped"),
    ("SSN 123-45-6789.", "SSN [ssn]."),
    ("one two three four five six seven eight nine", "[ssn]"),
    ("not an SSN: 000-12-3456", "not an SSN: 000-12-3456"),
    ("call 555-123-4567 or (415) 555 0100 or +44 20 7946 0958", "call [phone] or [phone] or [phone]"),
    ("1 800 555 0199", "[phone]"),
    ("write to john.smith@example.com today", "write to [email] today"),
    ("john dot smith at example dot com", "[email]"),
    # Numbers that are none of these stay: money, times, counts, "one moment".
    ("one moment, that is $25 for 3 items at 10:30", "one moment, that is $25 for 3 items at 10:30"),
])
def test_redact_finals(text, expected):
    assert redact(text, ALL) == expected


def test_a_card_number_being_read_out_is_masked_in_partials_before_it_is_whole():
    assert redact("my card number is 4111 1111", ALL, partial=True) == "my card number is [card]"
    assert redact("my card number is four one one one one one", ALL, partial=True) == "my card number is [card]"
    # In a final the same short run is not a card; not at the end of a partial either.
    assert redact("my card number is 4111 1111", ALL) == "my card number is 4111 1111"
    assert redact("room 4111 1111 is free", ALL, partial=True) == "room 4111 1111 is free"


def test_numbers_masks_every_number_but_not_words():
    kinds = frozenset({"numbers"})
    assert redact("I owe 2,500 dollars for 3 cars, one moment", kinds) == "I owe [number] dollars for [number] cars, one moment"


def test_only_the_kinds_asked_for():
    text = "mail a@b.co, card 4111 1111 1111 1111"
    assert redact(text, frozenset({"email"})) == "mail [email], card 4111 1111 1111 1111"
    assert redact(text, frozenset()) == text


def test_words_of_a_masked_stretch_become_one_tagged_word():
    words = [Word(" card", 0, 100, 0.9)] + [Word(f" {g}", 100 * i, 100 * i + 90, 0.9)
                                            for i, g in enumerate(["4111", "1111", "1111", "1111"], start=1)]
    words.append(Word(" thanks", 500, 600, 0.9))
    out = redact_words(words, ALL)
    assert [(w.word, w.start_ms, w.end_ms) for w in out] == [(" card", 0, 100), (" [card]", 100, 490),
                                                              (" thanks", 500, 600)]


def test_parse():
    assert parse_redact("pci") == {"pci"} and parse_redact(["ssn", "email"]) == {"ssn", "email"}
    with pytest.raises(ProtocolError):
        parse_redact(["cards"])
    with pytest.raises(ProtocolError):
        parse_redact(3)


PCI = frozenset({"pci"})


@pytest.mark.parametrize("text", [
    "forty one eleven eleven eleven eleven eleven eleven eleven",          # pairs, as ITN reads them
    "forty-one eleven, eleven eleven, eleven eleven, eleven eleven",
    "four one one one one one one one one one one one one one one two",    # fails Luhn: one digit misheard
    "4111 1111 1111 1112",
    "4111 1111, uh, 1111 1111",                                             # a filler inside the run
    "four one one one, um, one one one one, uh, one one one one one one one one",
    "4111 1111 1111 1111 1111 11",                                          # 22 digits: a card and more
    "thirty seven eighty two eight hundred twenty two four sixty three one thousand five",
])
def test_pci_masks_long_runs_however_they_are_said(text):
    assert redact(f"the card is {text}, thanks", PCI) == "the card is [card], thanks"
    assert redact(f"the card is {text}", PCI, partial=True) == "the card is [card]"
    assert redact("card 4111 1111, uh,", PCI, partial=True) == "card [card], uh,"      # still being read out
    assert redact("卡号四一一一一一嗯", PCI, partial=True) == "卡号[card]嗯"


def test_pci_leaves_short_numbers_and_words_that_are_not_fillers():
    assert redact("call me at ten, uh, 4111 1111 tomorrow", PCI) == "call me at ten, uh, 4111 1111 tomorrow"
    assert redact("4111 1111 and then 1111 1111", PCI) == "4111 1111 and then 1111 1111"


def test_numbers_masks_tens_and_teens_as_itn_would_write_them():
    kinds = frozenset({"numbers"})
    assert redact("wait ten minutes, I was twenty one then, one moment", kinds) == \
        "wait [number] minutes, I was [number] then, one moment"


def test_every_field_of_a_recognized_card_is_masked():
    said = "my card is forty one eleven eleven eleven eleven eleven eleven eleven thanks"
    words = [Word(f" {w}", 100 * i, 100 * i + 90, 0.9) for i, w in enumerate(said.split())]
    for kind in ("final", "partial"):
        got = postprocess(TextWork(redact=PCI), kind, DecodeResult(said, "en", words))
        fields = [got.text, got.raw_text, got.result.text, " ".join(w.word for w in got.result.words)]
        for field in fields:
            assert "[card]" in field and "eleven" not in field and "1111" not in field, (kind, field)
        assert [w.word for w in got.result.words] == [" my", " card", " is", " [card]", " thanks"]


def test_a_long_unspaced_partial_is_redacted_in_linear_time():
    every = frozenset({"pci", "ssn", "phone", "email", "numbers"})
    for text in ("中" * 30000, "1" * 30000, "a." * 15000, "four one " * 3000 + "uh, " * 3000):
        started = time.perf_counter()
        redact(text, every, partial=True)
        assert time.perf_counter() - started < 1.0, text[:20]
    assert redact("邮箱 john.smith@example.com 谢谢", every) == "邮箱 [email] 谢谢"
