"""How deeply JSON text nests, found without parsing it.

Python's JSON parser recurses per level: deep enough input raises RecursionError on one
version and parses on another. Input from sensors and the cloud is measured first, so a
payload nested deeper than its limit is refused the same way everywhere.
"""

from __future__ import annotations


def nesting_depth(text: str, limit: int) -> int:
    """Deepest ``[``/``{`` nesting of JSON text, ignoring brackets inside strings.

    Exact up to ``limit``; beyond it, some depth over the limit. Text with no more than
    ``limit`` brackets in all is not scanned (the common case costs two C-speed counts).
    A plain loop rather than a regex: no backtracking whatever the input.
    """
    if text.count("[") + text.count("{") <= limit:
        return 0  # cannot be deeper than the limit: skip the scan
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return depth  # enough to refuse: no need to read the rest
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest
