"""The log mask: configured secrets' values shown as *** when a log is read."""

from __future__ import annotations

from dagd.executors.logs import mask


def test_mask_hides_each_secret_longest_first_and_skips_short_ones() -> None:
    text = b"pw=hunter22 token=hunter22-extra short=abc empty= again hunter22\n"
    assert mask(text, ["hunter22", "hunter22-extra", "abc", ""]) == (
        b"pw=*** token=*** short=abc empty= again ***\n")
    assert mask(b"caf\xc3\xa9-secret", ["café-secret"]) == b"***"
    assert mask(b"nothing here", []) == b"nothing here"
