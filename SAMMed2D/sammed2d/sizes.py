"""Sizes as people write them on command lines ('512M', '2G'), for limits of the server and the web page."""

from __future__ import annotations

import re

from .errors import InputError

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes from '512M', '2G', '1.5G' or a plain number."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, flags=re.IGNORECASE)
    if not match:
        raise InputError(f"{text!r} is not a size; write for example 512M or 2G")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])
