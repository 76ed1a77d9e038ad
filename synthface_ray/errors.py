"""One line for every error a user can fix: the file, what is wrong, what to do (issue 21).

:func:`user_message` turns an exception into that line, or returns None for a bug (which then
shows its traceback). Disk full, read-only and permission errors name the path and the fix from
:data:`ERRNO_FIXES`; S3 errors say what to check (:data:`S3_CHECKS`); a user error raised in a
Ray worker (e.g. a generator actor's disk filling up) reaches the driver as a Ray traceback and is
rebuilt from it (:func:`ray_cause`), so it reads the same as on the driver.
"""

from __future__ import annotations

import builtins
import errno
import os
import re
import sys

from synthface_ray.config import ConfigError


class MissingExtraError(ImportError):
    """An optional dependency group (a pip extra) is not installed; the message names the
    ``pip install 'synthface-ray[...]'`` that fixes it."""


#: errors whose message alone tells the user what to fix (OSError: Permission/ConnectionError too)
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, ValueError, OSError, MissingExtraError)

_ELSEWHERE = "or write the output elsewhere (output.path / --out)"
#: errno -> (what happened, what to do); the path comes first in the message
ERRNO_FIXES: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the device", f"free space on that disk {_ELSEWHERE}, then re-run"),
    errno.EDQUOT: ("disk quota exceeded", f"free space within your quota {_ELSEWHERE}, then re-run"),
    errno.EROFS: ("read-only file system", f"remount it read-write {_ELSEWHERE}"),
    errno.EACCES: ("permission denied", f"give your user access to it (chmod u+rwX, or chown) {_ELSEWHERE}"),
    errno.EPERM: ("operation not permitted", f"give your user access to it (chmod u+rwX, or chown) {_ELSEWHERE}"),
}

_ENDPOINT = "the endpoint (storage.endpoint_url or AWS_ENDPOINT_URL) is reachable from here"
_BUCKET = "the bucket exists (create it, or fix the bucket name in the s3:// path)"
_CREDENTIALS = ("the credentials (storage.profile, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the "
                "machine's role) are valid and may use the bucket")
_REGION = "storage.region (or AWS_REGION) is the bucket's region"
#: (markers in an S3 error's text, what to check first); every S3 message lists all four after it
S3_CHECKS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("NETWORK_CONNECTION", "Could not connect", "Could not resolve", "EndpointConnectionError", "timed out"),
     _ENDPOINT),
    (("NO_SUCH_BUCKET", "NoSuchBucket"), _BUCKET),
    (("ACCESS_DENIED", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
      "HTTP status 403", "NoCredentialsError", "Unable to locate credentials"), _CREDENTIALS),
    (("PermanentRedirect", "AuthorizationHeaderMalformed", "HTTP status 301", "IllegalLocationConstraint"),
     _REGION),
)
_S3_MARKERS = ("AWS Error", "botocore", "S3 error")
_S3_ALL = ("endpoint (storage.endpoint_url), region (storage.region), credentials (storage.profile or "
           "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and bucket name")


def user_message(exc: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or None (a bug: show the traceback)."""
    if _is_ray_error(exc):
        cause = ray_cause(exc)
        return None if cause is None else user_message(cause)
    if type(exc).__module__.startswith("botocore."):
        return s3_message(f"S3 error: {exc}")
    if isinstance(exc, OSError):
        return os_message(exc)
    return str(exc) if isinstance(exc, USER_ERRORS) else None


def os_message(exc: OSError) -> str:
    """``path: what happened; what to do`` for disk full, read-only and permission errors, the
    S3 checks for S3 errors, else the error's own text."""
    text = str(exc)
    if any(marker in text for marker in _S3_MARKERS):
        return s3_message(text)
    if exc.errno not in ERRNO_FIXES:
        return text
    what, fix = ERRNO_FIXES[exc.errno]
    path = exc.filename or _quoted_path(text)
    if path is None:
        return f"{text}: {fix}"
    from synthface_ray.storage import visible_path  # lazy: pyarrow; errors is on the --help path

    return f"{visible_path(os.fspath(path))}: {what}; {fix}"


def s3_message(text: str) -> str:
    """An S3 error's text and what to check: the likeliest cause first, then all four."""
    if "storage.endpoint_url" in text:  # already explained where it was raised
        return text
    first = next((check for markers, check in S3_CHECKS if any(m in text for m in markers)), None)
    lead = f"Check that {first}; if so, check" if first else "Check"
    return f"{text.rstrip('. ')}. {lead} the S3 settings: {_S3_ALL}"


def _quoted_path(text: str) -> str | None:
    """The first quoted absolute path in an error text (pyarrow's messages quote the file)."""
    found = re.search(r"'(/[^']+)'", text)
    return found.group(1) if found else None


# errors raised in Ray workers -----------------------------------------------------------------
_EXC_LINE = re.compile(r"^(?P<name>[A-Za-z_][\w.]*): (?P<text>.*)$")
_ERRNO_TEXT = re.compile(r"^\[Errno (?P<errno>\d+)\] (?P<strerror>.*?)(?:: '(?P<filename>.*)')?$")


def _is_ray_error(exc: BaseException) -> bool:
    ray_exceptions = sys.modules.get("ray.exceptions")
    return ray_exceptions is not None and isinstance(exc, ray_exceptions.RayError)


def _user_error_class(name: str) -> type[BaseException] | None:
    """The user-error class a traceback line names (a builtin, or the config's ``ConfigError``)."""
    cls = ConfigError if name == "synthface_ray.config.ConfigError" else getattr(builtins, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, USER_ERRORS) else None


def ray_cause(exc: BaseException) -> BaseException | None:
    """The user error (``OSError``, ``ValueError``, ``ConfigError``) a Ray task or actor raised,
    rebuilt from the worker's traceback that the error's text carries (Ray Data wraps it in a
    ``UserCodeException`` whose cause does not survive the trip to the driver). Of a chain, the
    last one (re-raised with the most context, e.g. the file name); None when the worker raised
    none (a bug: its traceback is shown)."""
    found = [(cls, m["text"]) for m in map(_EXC_LINE.match, str(exc).splitlines())
             if m and (cls := _user_error_class(m["name"])) is not None]
    if not found:
        return None
    cls, message = found[-1]
    parsed = _ERRNO_TEXT.match(message) if issubclass(cls, OSError) else None
    if parsed is not None:
        return OSError(int(parsed["errno"]), parsed["strerror"], parsed["filename"])  # errno picks the subclass
    try:
        return cls(message)
    except TypeError:  # e.g. UnicodeDecodeError takes five arguments
        return ValueError(message)


__all__ = ["ERRNO_FIXES", "S3_CHECKS", "USER_ERRORS", "os_message", "ray_cause", "s3_message", "user_message"]
