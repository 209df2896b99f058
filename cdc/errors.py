"""The error vocabulary of cdc.

Every error a user can meet says what went wrong and how to fix it. Errors are split by what the
caller should do with them: retry (TransientError), give up on one message (TerminalError for a
message), or stop (CdcError and its other subclasses).
"""

from __future__ import annotations


class CdcError(Exception):
    """An error cdc reports to the user and stops on; the message names the problem and the fix."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}\n  fix: {fix}" if fix else problem)


class ConfigError(CdcError):
    """Settings are missing or invalid."""


class MissingToolError(CdcError):
    """A binary the native stack needs (java, mvn, initdb...) is not installed."""


class StackError(CdcError):
    """A part of the native stack failed to start, stop or become ready."""


class ConnectorError(CdcError):
    """Kafka Connect refused or failed a connector."""


class TransientError(CdcError):
    """Worth retrying: the operation may succeed unchanged later (connection lost, restart...)."""


class TerminalError(CdcError):
    """Retrying cannot help; the input or the setup must change."""
