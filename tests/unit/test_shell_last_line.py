"""A shell task's last stdout line, its XCom: cut so that, as JSON, it fits the XCom
cap's default (quotes and escapes counted), and no shorter than it must be."""

from __future__ import annotations

import orjson
import pytest

from dagd.kinds.shell import LINE_CAP, LastLine


@pytest.mark.parametrize("char", ["x", '"', "\\", "\x01", "é"])
def test_the_last_line_fits_the_xcom_cap_as_json(char: str) -> None:
    tail = LastLine()
    line = (char * LINE_CAP).encode()[: LINE_CAP - 1]
    tail.feed(b"first\n" + line + b"\n")
    value = tail.value()
    assert value is not None
    assert value.strip(char) == "" or char == "é"  # cut, never padded
    encoded = len(orjson.dumps(value))
    assert encoded <= LINE_CAP
    assert encoded > LINE_CAP - 8  # the longest start that fits, not far less
