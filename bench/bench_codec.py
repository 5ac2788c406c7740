"""The record codec against plain cbor2 (its floor: no validation), in the same run.

Run: ``pytest bench/bench_codec.py --benchmark-only -p no:cacheprovider``. The
ratios (codec / plain cbor2) are printed at the end of the run (bench/conftest.py).

Measured: a ~330-byte ccxt-like order with float and with Decimal numbers, and a
state of 10,000 such orders (the size of a large snapshot), encoded and decoded.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import cbor2
import pytest

from bench.conftest import ratio
from journal.log.codec import decode, encode, warm_up

STATE_ORDERS = 10_000


def make_order(number: Callable[[str], Any], n: int = 0) -> dict[str, Any]:
    """A ccxt-style unified order, as a bot keeps it in its state (about 330 bytes)."""
    return {
        "id": f"83897655190{n:08d}",
        "clientOrderId": f"tjA1b2C3d4E5f6G7h8I9j0K1{n:08d}",
        "symbol": "BTC/USDT",
        "side": "buy",
        "type": "limit",
        "timeInForce": "GTC",
        "price": number("43210.57"),
        "amount": number("0.0125"),
        "filled": number("0.005"),
        "remaining": number("0.0075"),
        "average": number("43209.99"),
        "cost": number("216.04995"),
        "status": "open",
        "timestamp": 1_700_000_000_123_000_000 + n,
        "lastTradeTimestamp": 1_700_000_000_456_000_000 + n,
        "fee": {"cost": number("0.00021"), "currency": "USDT"},
        "trades": [],
    }


def make_state(number: Callable[[str], Any]) -> dict[str, Any]:
    orders = {f"tj{n:030d}": make_order(number, n) for n in range(STATE_ORDERS)}
    return {"orders": orders, "positions": {}, "balances": {"USDT": number("1000.5"), "BTC": number("0.0125")}}


NUMBERS: dict[str, Callable[[str], Any]] = {"float": float, "decimal": Decimal}

for kind in NUMBERS:
    for op, peer in (("encode", "dumps"), ("decode", "loads")):
        ratio(f"{op} order ({kind}) / cbor2.{peer}", f"codec.{op}_order_{kind}", f"peer.{peer}_order_{kind}", "<= 2.5")
        ratio(
            f"{op} {STATE_ORDERS} orders ({kind}) / cbor2.{peer}",
            f"codec.{op}_state_{kind}",
            f"peer.{peer}_state_{kind}",
            "<= 2.5",
        )


@pytest.fixture(scope="module", autouse=True)
def _warm() -> None:
    warm_up()  # cbor2's first Decimal costs ~15 ms; do not time it


@pytest.mark.parametrize("kind", list(NUMBERS))
def test_order_size(kind: str) -> None:
    assert 280 <= len(encode(make_order(NUMBERS[kind]))) <= 360


@pytest.mark.parametrize("kind", list(NUMBERS))
def test_encode_order(benchmark: Any, record_median: Any, kind: str) -> None:
    order = make_order(NUMBERS[kind])
    assert benchmark(encode, order) == cbor2.dumps(order)
    record_median(f"codec.encode_order_{kind}")


@pytest.mark.parametrize("kind", list(NUMBERS))
def test_peer_cbor2_dumps_order(benchmark: Any, record_median: Any, kind: str) -> None:
    benchmark(cbor2.dumps, make_order(NUMBERS[kind]))
    record_median(f"peer.dumps_order_{kind}")


@pytest.mark.parametrize("kind", list(NUMBERS))
def test_decode_order(benchmark: Any, record_median: Any, kind: str) -> None:
    order = make_order(NUMBERS[kind])
    assert benchmark(decode, encode(order)) == order
    record_median(f"codec.decode_order_{kind}")


@pytest.mark.parametrize("kind", list(NUMBERS))
def test_peer_cbor2_loads_order(benchmark: Any, record_median: Any, kind: str) -> None:
    benchmark(cbor2.loads, encode(make_order(NUMBERS[kind])))
    record_median(f"peer.loads_order_{kind}")


@pytest.mark.parametrize("kind", list(NUMBERS))
def test_encode_state(benchmark: Any, record_median: Any, kind: str) -> None:
    state = make_state(NUMBERS[kind])
    benchmark.pedantic(encode, args=(state,), rounds=5, warmup_rounds=1)
    record_median(f"codec.encode_state_{kind}")


@pytest.mark.parametrize("kind", list(NUMBERS))
def test_peer_cbor2_dumps_state(benchmark: Any, record_median: Any, kind: str) -> None:
    state = make_state(NUMBERS[kind])
    benchmark.pedantic(cbor2.dumps, args=(state,), rounds=5, warmup_rounds=1)
    record_median(f"peer.dumps_state_{kind}")


@pytest.mark.parametrize("kind", list(NUMBERS))
def test_decode_state(benchmark: Any, record_median: Any, kind: str) -> None:
    data = encode(make_state(NUMBERS[kind]))
    benchmark.pedantic(decode, args=(data,), rounds=5, warmup_rounds=1)
    record_median(f"codec.decode_state_{kind}")


@pytest.mark.parametrize("kind", list(NUMBERS))
def test_peer_cbor2_loads_state(benchmark: Any, record_median: Any, kind: str) -> None:
    data = encode(make_state(NUMBERS[kind]))
    benchmark.pedantic(cbor2.loads, args=(data,), rounds=5, warmup_rounds=1)
    record_median(f"peer.loads_state_{kind}")
