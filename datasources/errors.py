"""Errors raised by the datasources package.

    DatasourceError                 base; ``source`` names the datasource, ``retryable`` says
     │                              whether running the job again later may succeed
     ├── FetchError                 the data could not be fetched (HTTP status, connection,
     │   │                          timeout, missing file); ``retryable`` set per case
     │   └── SoapFaultError         the SOAP service answered a Fault (``code``); permanent
     ├── ResponseFormatError        the data arrived but is not what the config says (not
     │                              JSON, records_path missing, bad CSV row, bad XML)
     ├── ConfigError                the datasource's config cannot work (bad template,
     │   │                          unknown type, no database for a collection source)
     │   ├── SecretMissingError     an environment variable naming a secret is unset
     │   └── NotAllowedError        the job reaches beyond the operator's policy
     │                              (``datasources.policy``): a file outside the roots, a
     │                              variable not allowed, a refused host or address
     └── SlurperError               the job's slurper cannot run or failed
         ├── SlurperNotAllowedError its module is outside Settings.slurper_modules (also
         │                          a NotAllowedError)
         ├── SlurperImportError     its module or function cannot be imported
         ├── SlurperFailedError     it raised an exception
         └── SlurperResultError     it returned something that is not an iterable of records

Messages never contain secrets: every message built from a request or an answer of a
source that uses secrets is passed through ``datasources.redaction.Redactor`` first,
and every message has the userinfo and credential-like query values of the URLs in it
masked when the error is made (``contracts.masking.scrub_urls``).
Bad *records* (not a JSON object, bad field names) are reported by storage at write
time as ``storage.errors.BadRecordError`` naming the record's position.
"""

from __future__ import annotations

from collections.abc import Callable

from contracts.masking import scrub_urls

__all__ = [
    "ConfigError",
    "DatasourceError",
    "FetchError",
    "NotAllowedError",
    "ResponseFormatError",
    "SecretMissingError",
    "SlurperError",
    "SlurperFailedError",
    "SlurperImportError",
    "SlurperNotAllowedError",
    "SlurperResultError",
    "SoapFaultError",
]


class DatasourceError(Exception):
    """Base class of every error this package raises on purpose.

    ``str(error)`` is ``"datasource 'NAME': problem"`` once ``source`` is known. The
    default ``retryable`` of a class is ``False``: a permanent problem.
    """

    default_retryable = False

    def __init__(
        self, message: str, *, source: str | None = None, retryable: bool | None = None
    ) -> None:
        message = scrub_urls(message)
        super().__init__(message)
        self.message = message
        self.source = source
        self.retryable = self.default_retryable if retryable is None else retryable

    def with_source(self, name: str) -> DatasourceError:
        """Set ``source`` unless it is set already; returns ``self``."""
        if self.source is None:
            self.source = name
        return self

    def redact(self, redact: Callable[[str], str]) -> None:
        """Replace the message by ``redact(message)`` (a ``Redactor``)."""
        self.message = scrub_urls(redact(self.message))
        self.args = (self.message,)

    def __str__(self) -> str:
        if self.source is None:
            return self.message
        return f"datasource {self.source!r}: {self.message}"


class FetchError(DatasourceError):
    """Fetching failed. ``retryable`` is True for 429/5xx/connection errors/timeouts
    (after the source's own retries were used up), False for other 4xx answers."""

    default_retryable = True

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        retryable: bool | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, source=source, retryable=retryable)
        self.status = status


class SoapFaultError(FetchError):
    """The SOAP service answered with a Fault: the call itself is refused, so running
    it again does not help (permanent). ``code`` is the fault code (e.g. ``soap:Client``)."""

    default_retryable = False

    def __init__(self, message: str, *, source: str | None = None, code: str = "") -> None:
        super().__init__(message, source=source, retryable=False)
        self.code = code


class ResponseFormatError(DatasourceError):
    """The data is not in the shape the config describes. Permanent."""


class ConfigError(DatasourceError):
    """The datasource's configuration cannot work. Permanent."""


class SecretMissingError(ConfigError):
    """An environment variable that should hold a secret is not set (its *name* is in
    the message, never a value)."""


class NotAllowedError(ConfigError):
    """The job reaches something the operator's policy does not allow (a file outside
    ``SLURP_FILE_ROOTS``, a variable outside ``SLURP_JOB_ENV_ALLOW`` or any ``SLURP_*``,
    a host or address the egress rules refuse). Permanent; the message names what was
    refused and the setting that would allow it."""


class SlurperError(DatasourceError):
    """The slurper could not run, or failed. Permanent."""


class SlurperNotAllowedError(SlurperError, NotAllowedError):
    """The slurper's module is not under an allowed prefix; it was not imported."""


class SlurperImportError(SlurperError):
    """The slurper's module or function cannot be imported or is not callable."""


class SlurperFailedError(SlurperError):
    """The slurper raised; the original exception is ``__cause__``."""


class SlurperResultError(SlurperError):
    """The slurper returned something that is not an iterable of records."""
