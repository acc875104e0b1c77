"""Durable futures: what context operations return. Each wraps a machine handle
and a decoder; awaiting it asks the session to wait for that handle."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from perdure.sdk.errors import TerminalError
from perdure.sdk.journal import Failure, Result, Void
from perdure.sdk.serde import DefaultSerde, Serde

if TYPE_CHECKING:
    from perdure.sdk.session import Session

T = TypeVar("T")
_UNSET: Any = object()


def value_decoder(serde: Serde[T]) -> Callable[[Result], T | None]:
    """Decode a Value with `serde`; raise a Failure as TerminalError; VOID is None."""

    def decode(result: Result) -> T | None:
        if isinstance(result, bytes):
            return serde.deserialize(result)
        if isinstance(result, Failure):
            raise TerminalError(result.message, result.code)
        return None

    return decode


def identity(result: Result) -> Any:
    if isinstance(result, Failure):
        raise TerminalError(result.message, result.code)
    if isinstance(result, Void):
        return None
    return result


class DurableFuture(Generic[T]):
    """A result the journal will hold; await it like any awaitable."""

    __slots__ = ("_decode", "_session", "_value", "handle")

    def __init__(self, session: Session, handle: int, decode: Callable[[Result], Any]) -> None:
        self._session = session
        self.handle = handle
        self._decode = decode
        self._value: Any = _UNSET

    def is_completed(self) -> bool:
        return self._session.machine.is_completed(self.handle)

    async def _get(self) -> T:
        if self._value is _UNSET:
            if not self._session.machine.is_completed(self.handle):
                await self._session.wait((self.handle,), wait_all=True)
            self._value = self._decode(self._session.machine.result(self.handle))
        return self._value  # type: ignore[no-any-return]

    def __await__(self) -> Generator[Any, None, T]:
        return self._get().__await__()


class DurableSleepFuture(DurableFuture[None]):
    """The end of a durable timer."""

    __slots__ = ()


class DurableCallFuture(DurableFuture[T]):
    """The result of a call, plus the callee's invocation id."""

    __slots__ = ("_id_handle",)

    def __init__(
        self, session: Session, handle: int, decode: Callable[[Result], Any], id_handle: int
    ) -> None:
        super().__init__(session, handle, decode)
        self._id_handle = id_handle

    async def invocation_id(self) -> str:
        return await DurableFuture[str](self._session, self._id_handle, identity)

    async def cancel_invocation(self) -> None:
        self._session.machine.cancel_invocation(await self.invocation_id())


class SendHandle:
    """A one-way call that was sent; its invocation id arrives later."""

    __slots__ = ("_id_handle", "_session")

    def __init__(self, session: Session, id_handle: int) -> None:
        self._session = session
        self._id_handle = id_handle

    async def invocation_id(self) -> str:
        return await DurableFuture[str](self._session, self._id_handle, identity)

    async def cancel_invocation(self) -> None:
        self._session.machine.cancel_invocation(await self.invocation_id())


class DurablePromise(Generic[T]):
    """A workflow's named promise: resolved once, awaited by the workflow run."""

    def __init__(self, session: Session, name: str, serde: Serde[T] | None = None) -> None:
        self._session = session
        self.name = name
        self.serde: Serde[T] = serde if serde is not None else DefaultSerde()

    def value(self) -> DurableFuture[T]:
        handle = self._session.machine.get_promise(self.name)
        return DurableFuture(self._session, handle, value_decoder(self.serde))

    async def resolve(self, value: T) -> None:
        handle = self._session.machine.complete_promise(self.name, self.serde.serialize(value))
        await DurableFuture[None](self._session, handle, identity)

    async def reject(self, message: str, code: int = 500) -> None:
        handle = self._session.machine.complete_promise(self.name, Failure(code, message))
        await DurableFuture[None](self._session, handle, identity)

    async def peek(self) -> T | None:
        handle = self._session.machine.peek_promise(self.name)
        return await DurableFuture[T | None](self._session, handle, value_decoder(self.serde))

    def __await__(self) -> Generator[Any, None, T]:
        return self.value().__await__()


RestateDurableFuture = DurableFuture
RestateDurableCallFuture = DurableCallFuture
RestateDurableSleepFuture = DurableSleepFuture
