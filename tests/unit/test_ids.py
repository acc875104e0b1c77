"""Base62 as Restate's ids spell it: fixed width, most significant digit first, zero-padded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from perdure.protocol.ids import ALPHABET, InvocationId, b62decode, b62encode


def _digits(n: int, width: int) -> str:
    """The definition, one digit at a time."""
    out = ""
    for _ in range(width):
        n, r = divmod(n, 62)
        out = ALPHABET[r] + out
    assert n == 0
    return out


_WIDTH_AND_N = st.integers(min_value=1, max_value=22).flatmap(
    lambda w: st.tuples(st.just(w), st.integers(0, 62**w - 1))
)


@given(_WIDTH_AND_N)
def test_b62encode_is_the_fixed_width_base62_of_n(case: tuple[int, int]) -> None:
    width, n = case
    text = b62encode(n, width)
    assert text == _digits(n, width)
    assert b62decode(text) == n


def test_edges() -> None:
    assert b62encode(0, 11) == "0" * 11
    assert b62encode(61, 2) == "0Z"
    assert b62encode(62, 2) == "10"
    assert b62encode(62**22 - 1, 22) == "Z" * 22
    assert b62encode(62**3, 3) == "1000"  # wider than asked: never cut


def test_invocation_id_text_round_trips() -> None:
    inv = InvocationId(0x0123456789ABCDEF, bytes(range(16)))
    assert InvocationId.parse(str(inv)) == inv
    assert str(InvocationId(0, bytes(16))) == "inv_1" + "0" * 33
