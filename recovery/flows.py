"""One sans-IO step protocol for everything that talks to an exchange, and its two drivers.

The order helpers (:mod:`recovery.orders`), reconciliation
(:mod:`recovery.reconcile`) and the managers (:mod:`recovery.manager`) are
written once, as generator *flows* that ``yield`` the I/O they need and
receive its result (or have its exception thrown back in):

- :class:`Call` -- ``exchange.<method>(*args, **kwargs)``, a request to the
  venue through ccxt;
- :class:`Sleep` -- wait (a backoff, a settle window);
- :class:`Local` -- a blocking local call: a journal write that syncs to disk,
  a snapshot, a thread join.

Two thin drivers run a flow: :func:`run` (plain calls, for sync ccxt) and
:func:`arun` (``await``, for ``ccxt.async_support``), which runs every
:class:`Local` step in a worker thread, so **nothing on an asyncio path blocks
the event loop on disk I/O** -- while the flow still waits for the step, so an
intent is durable before the request that carries its client id can leave.

:func:`blocking` and :func:`coroutine` turn a flow method into a sync method
and into a coroutine method with the same signature and docstring: the sync and
async classes are two bindings of one implementation, never hand copies.

A ``BaseException`` that is not an ``Exception`` (``KeyboardInterrupt``, task
cancellation) is not thrown into the flow: the driver closes the flow (its
``finally`` blocks run) and re-raises, so an operation in flight stays pending
for reconciliation.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine, Generator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

__all__ = ["Call", "Driven", "Flow", "Local", "Sleep", "Step", "arun", "blocking", "coroutine", "local", "run"]

T = TypeVar("T")
P = ParamSpec("P")
S = TypeVar("S", bound="Driven")


@dataclass(frozen=True)
class Call:
    """A request to the exchange: ``exchange.<method>(*args, **kwargs)``."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.method}{self.args!r}"


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` (``time.sleep`` or ``asyncio.sleep``)."""

    seconds: float


@dataclass(frozen=True)
class Local:
    """A local call ``fn(*args, **kwargs)``: inline when sync; in a worker thread when async, if ``blocking``.

    ``blocking=False`` marks a call that never waits on the disk (a commit marker that rides on the
    next synced transaction): the async driver runs it on the loop, saving a thread hop.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    blocking: bool = True

    def __call__(self) -> Any:
        return self.fn(*self.args, **self.kwargs)


Step = Call | Sleep | Local
Flow = Generator[Step, Any, T]


def run(flow: Flow[T], exchange: Any) -> T:
    """Drive ``flow`` with plain calls (sync ccxt); return its result."""
    value: Any = None
    exc: Exception | None = None
    try:
        while True:
            step = flow.throw(exc) if exc is not None else flow.send(value)
            value, exc = None, None
            try:
                if isinstance(step, Call):
                    value = getattr(exchange, step.method)(*step.args, **step.kwargs)
                elif isinstance(step, Local):
                    value = step()
                else:
                    time.sleep(step.seconds)
            except Exception as e:  # handed back to the flow, which decides what it means
                exc = e
    except StopIteration as stop:
        return stop.value
    finally:
        flow.close()


async def arun(flow: Flow[T], exchange: Any, *, io: Executor | None = None) -> T:
    """Drive ``flow`` with ``await`` (async ccxt); :class:`Local` steps run in ``io`` (default: the loop's executor)."""
    loop = asyncio.get_running_loop()
    value: Any = None
    exc: Exception | None = None
    try:
        while True:
            step = flow.throw(exc) if exc is not None else flow.send(value)
            value, exc = None, None
            try:
                if isinstance(step, Call):
                    value = await getattr(exchange, step.method)(*step.args, **step.kwargs)
                elif isinstance(step, Local):
                    value = await loop.run_in_executor(io, step) if step.blocking else step()
                else:
                    await asyncio.sleep(step.seconds)
            except Exception as e:
                exc = e
    except StopIteration as stop:
        return stop.value
    finally:
        flow.close()


class Driven(Protocol):
    """What :func:`blocking` and :func:`coroutine` need of the object a flow method belongs to."""

    @property
    def exchange(self) -> Any: ...

    def io_executor(self) -> Executor | None: ...


def blocking(method: Callable[Concatenate[S, P], Flow[T]]) -> Callable[Concatenate[S, P], T]:
    """The sync twin of a flow method: same signature and docstring, returns the flow's result."""

    @functools.wraps(method)
    def sync(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return run(method(self, *args, **kwargs), self.exchange)

    return sync


def coroutine(
    method: Callable[Concatenate[S, P], Flow[T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """The async twin of a flow method: same signature and docstring, a coroutine."""

    @functools.wraps(method)
    async def asynchronous(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await arun(method(self, *args, **kwargs), self.exchange, io=self.io_executor())

    return asynchronous


def local(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Local:
    """A :class:`Local` step (typed sugar: ``result = yield local(journal.begin, "place_order", data)``)."""
    return Local(fn, args, kwargs)
