"""The B-route driver's own exception types.

The architecture lets errors cross a layer boundary only as that layer's types, so everything the
driver raises on purpose derives from :class:`BrouteError`; a supervisor can catch that one name.
"""

from __future__ import annotations


class BrouteError(Exception):
    """Base of every error raised on purpose by ``drivers.broute``."""


class ParseError(BrouteError):
    """The line parser was misused or hit an internal fault.

    Module output, however garbled, never raises: it becomes ``Unrecognised`` events. This is only
    raised for a caller mistake (feeding ``str`` instead of bytes) or, defensively, if a bug inside
    the parser throws; the parser has then already reset itself and can be fed again.
    """


class PayloadError(BrouteError, ValueError):
    """A UDP payload that SKSENDTO cannot carry (empty or longer than 1232 bytes)."""


class PortError(BrouteError):
    """The serial port could not be opened or went away; the message says what to do about it."""

    def __init__(self, port: str, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.port = port
        self.errno = errno


class LinkError(BrouteError):
    """The link to the meter broke (session ended, module stopped sending): a rejoin is needed."""


class JoinError(BrouteError):
    """A join attempt ended without a PANA session.

    ``retryable`` is False for the two failures that need a person (rejected credentials, wrong
    dialect); trying again at once only repeats them, so the adapter waits long before it does.
    """

    def __init__(self, message: str, *, reason: str, retryable: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = retryable


class CredentialsRejected(JoinError):
    """EVENT 24 on the first join with these credentials: the B-route ID or password is wrong."""


class WrongDialect(JoinError):
    """The module rejected the configured command forms with FAIL ER05."""


class NoPanFound(JoinError):
    """No scan found the meter."""


class RequestTimeout(BrouteError):
    """The meter did not answer an ECHONET Lite request within the timeout, after every retry."""


class MeterSilent(LinkError):
    """Several requests in a row went unanswered: the meter (or the session) is gone."""


class RequestRefused(BrouteError):
    """The meter answered with SNA (service not available) for every property asked for."""


class SendError(BrouteError):
    """The module gave up sending a datagram (EVENT 21 01 repeatedly, FAIL, session ended)."""

    def __init__(self, message: str, *, session_ended: bool = False) -> None:
        super().__init__(message)
        self.session_ended = session_ended
