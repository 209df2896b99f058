"""The error vocabulary of cdc.

Every error a user can meet says what went wrong and how to fix it, and carries the exit status
the CLI ends with (README, "When something is wrong"). Errors are split by what the caller should
do with them: retry (TransientError), give up on one message (TerminalError for a message), or
stop (every other CdcError). A driver's exception becomes one of these in exactly one place per
system: cdc/pgerrors.py for PostgreSQL, cdc/kafka_errors.py for Kafka, cdc/connect_api.py for
Kafka Connect, cdc/settings.py for settings and files.
"""

from __future__ import annotations

from typing import ClassVar

# Exit statuses of the `cdc` command (README, "When something is wrong").
EXIT_OK = 0
EXIT_FAILURE = 1  # the command ran and failed: a stall, retries given up, letters still failing
EXIT_CONFIG = 2  # configuration or usage: nothing changes until the settings or the command do
EXIT_BUG = 70  # an error cdc did not expect: a bug (sysexits' EX_SOFTWARE)


class CdcError(Exception):
    """An error cdc reports to the user and stops on; the message names the problem and the fix."""

    exit_code: ClassVar[int] = EXIT_FAILURE

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}\n  fix: {fix}" if fix else problem)


class ConfigError(CdcError):
    """Settings, files or options are missing or invalid: retrying cannot help."""

    exit_code = EXIT_CONFIG


class AccessError(ConfigError):
    """A server refused who cdc is or what it asked for: authentication, authorization, a database
    that does not exist. Terminal: the credentials, grants or names must change."""


class MissingToolError(ConfigError):
    """A binary the native stack needs (java, mvn, initdb...) is not installed."""


class StackError(CdcError):
    """A part of the native stack failed to start, stop or become ready."""


class ConnectorError(CdcError):
    """Kafka Connect refused or failed a connector."""


class NotFoundError(CdcError):
    """Something the command was asked about does not exist (a dead letter's id...)."""


class TransientError(CdcError):
    """Worth retrying: the operation may succeed unchanged later (connection lost, restart...)."""


class TerminalError(CdcError):
    """Retrying cannot help; the input or the setup must change."""
