"""ITN tables for the three languages (wetext FSTs plus our quirk fixes)."""

import pytest

from lingting_server.text.itn import inverse_normalize
from lingting_testkit.corpus import strip_digit_groups


@pytest.mark.parametrize("spoken, written", [
    ("二零二五年三月", "2025年3月"),
    ("一百二十八元", "¥128"),
    ("百分之十二", "12%"),
    ("我的电话是一三八零零一三八零零零", "我的电话是13800138000"),
    ("二零二五年三月五日下午三点半开会", "2025年3月5日下午3:30开会"),   # wetext glues date and time
    ("這是二零二五年", "这是2025年"),                                 # Traditional -> Simplified
])
def test_chinese(spoken, written):
    assert inverse_normalize(spoken, "zh") == written


@pytest.mark.parametrize("spoken, written", [
    ("twenty three dollars and fifty cents", "$23.50"),
    ("twenty five dollars", "$25"),
    ("twelve percent of it", "12% of it"),                 # no stray space before %
    ("it costs twenty five dollars , okay .", "it costs $25, okay."),
    ("the third of may", "3 may"),
    ("it was the first great sorrow", "it was the first great sorrow"),   # prose ordinals stay words
    ("the twenty first century", "the 21st century"),
    ("the total was $1250 and 75 cents.", "the total was $1250.75."),   # wetext leaves mixed money
    ("my number is five five five one two three four", "my number is 5551234"),
    ("The expression goes 6 times 10 equals 60.", "The expression goes 6 × 10 = 60."),
    ("ask not what your country can do for you", "ask not what your country can do for you"),
])
def test_english(spoken, written):
    assert inverse_normalize(spoken, "en") == written


@pytest.mark.parametrize("spoken, written", [
    ("二千二十五年三月", "2025年3月"),
    ("百二十八円", "128円"),
    ("十二パーセント", "12%"),
])
def test_japanese(spoken, written):
    assert inverse_normalize(spoken, "ja") == written


def test_unknown_language_and_empty_text_pass_through():
    assert inverse_normalize("twenty five", "fr") == "twenty five"
    assert inverse_normalize("", "en") == ""
    assert inverse_normalize("twenty five", None) == "twenty five"


def test_digit_groups():
    assert strip_digit_groups("600,000 and 1,250.75, then 3, 4") == "600000 and 1250.75, then 3, 4"
