"""The one dict -> dataclass loader behind model configs and recipes (codec12._dataclass_io): it reads what the
type hints say, and its errors name the dotted key path and the file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from codec12._dataclass_io import keys_fixed, load, non_default, to_plain


@dataclass(frozen=True, kw_only=True)
class Inner:
    rate: float = 1.0
    sizes: tuple[int, ...] = (1, 2)


@dataclass(frozen=True, kw_only=True)
class First:
    kind: Literal["first"] = "first"
    path: str


@dataclass(frozen=True, kw_only=True)
class Second:
    kind: Literal["second"] = "second"
    n: int = 1


@dataclass(frozen=True, kw_only=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    extra: Inner | None = None
    pick: First | Second | None = None
    weights: dict[str, float] = field(default_factory=dict)
    flag: bool = False
    mode: Literal["x", "y"] = "x"


def test_load_builds_what_the_hints_say():
    data = {"inner": {"sizes": [3, 4]}, "extra": {}, "pick": {"kind": "second", "n": 2}, "weights": {"mel": 1}}
    got = load(Outer, data)
    assert got == Outer(inner=Inner(sizes=(3, 4)), extra=Inner(), pick=Second(n=2), weights={"mel": 1})
    assert type(got.inner.sizes) is tuple and type(got.weights["mel"]) is int  # numbers stay as written
    assert load(Outer, {"pick": {"kind": "first", "path": "p"}}).pick == First(path="p")
    assert load(Outer, to_plain(got)) == got and to_plain(got)["inner"] == {"rate": 1.0, "sizes": [3, 4]}
    # Only what differs from the defaults; a set optional block as {} at least; a union member with its tag.
    assert non_default(got) == {"inner": {"sizes": [3, 4]}, "extra": {}, "pick": {"kind": "second", "n": 2},
                                "weights": {"mel": 1}}
    assert non_default(Outer()) == {} and non_default(Outer(pick=Second())) == {"pick": {"kind": "second"}}


@pytest.mark.parametrize("data, match", [
    ({"inner": {"rat": 1}}, r"^f.json: inner: unknown keys \['rat'\] \(known: \['rate', 'sizes'\]\)$"),
    ({"innr": {}}, r"^f.json: unknown keys \['innr'\]"),
    ({"weights": {"mel": True}}, "^f.json: weights.mel must be a finite number, got true$"),
    ({"inner": {"rate": float("inf")}}, "^f.json: inner.rate must be a finite number, got Infinity$"),
    ({"inner": {"sizes": [1, 2.5]}}, r"^f.json: inner.sizes must be a list of integers, got list \[1, 2.5\]$"),
    ({"inner": []}, r"^f.json: inner must be an object \(Inner\), got list \[\]$"),
    ({"extra": 3}, r"^f.json: extra must be an object \(Inner\) or null, got 3$"),
    ({"flag": 1}, "^f.json: flag must be true or false, got 1$"),
    ({"mode": "z"}, r"^f.json: mode must be one of \['x', 'y'\], got string \"z\"$"),
    ({"pick": {"kind": "third"}}, r"^f.json: pick.kind must be one of \['first', 'second'\], got string \"third\"$"),
    ({"pick": {"n": 2}}, r"^f.json: pick.kind must be one of \['first', 'second'\], got null$"),
    ({"pick": {"kind": "first"}}, "^f.json: pick.path is required for the first kind$"),
    ({"pick": {"kind": "first", "path": "p", "n": 2}}, r"^f.json: pick: unknown keys \[.n.\] for the first kind"),
])
def test_errors_name_the_file_and_the_key_path(data, match):
    with pytest.raises(ValueError, match=match):
        load(Outer, data, "f.json")


def test_which_keys_the_types_fix():
    """Where a recipe may add keys that its base lacks: below a dict or a union of dataclasses, not elsewhere."""
    assert keys_fixed(Outer, ()) and keys_fixed(Outer, ("inner",)) and keys_fixed(Outer, ("extra",))
    assert not keys_fixed(Outer, ("weights",)) and not keys_fixed(Outer, ("pick",))
