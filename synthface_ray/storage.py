"""One storage layer for every stage: local paths and ``s3://bucket/prefix`` URIs.

``resolve(uri, cfg)`` returns a :class:`Location` holding a ``pyarrow.fs.FileSystem`` and the path
inside it; everything else (Parquet, Ray Data, manifests) goes through that pair. S3 endpoint,
region and credentials come from the config when set, else from the standard AWS variables
(``AWS_ENDPOINT_URL[_S3]``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``...) and
profiles. Credentials are never printed: :class:`StorageConfig` hides them from ``repr`` and from
resolved configs.

Writes are atomic: locally a hidden temporary name in the destination directory, then a rename;
on S3 the bytes are complete in hand before a single upload, so no reader sees half an object.
Hidden names (leading ``.``) are skipped by pyarrow datasets and Ray Data readers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import posixpath
import re
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

from synthface_ray.config import ConfigError, secret_field

S3_SCHEME = "s3://"


@dataclass
class StorageConfig:
    """Where S3 lives and how to authenticate; every field falls back to the AWS defaults."""

    endpoint_url: str | None = None  # e.g. http://127.0.0.1:9000 for MinIO/moto; else AWS_ENDPOINT_URL
    region: str | None = None  # else AWS_REGION / AWS_DEFAULT_REGION
    profile: str | None = None  # a profile of ~/.aws/credentials; else AWS_PROFILE / default chain
    access_key_id: str | None = secret_field()
    secret_access_key: str | None = secret_field()
    session_token: str | None = secret_field()
    anonymous: bool = False

    def __post_init__(self) -> None:
        if self.endpoint_url and not self.endpoint_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"storage.endpoint_url={self.endpoint_url!r} must start with http:// or https://"
            )
        if bool(self.access_key_id) != bool(self.secret_access_key):
            raise ConfigError(
                "storage.access_key_id and storage.secret_access_key must be set together "
                "(or neither, to use the AWS environment variables or a profile)"
            )


@dataclass(frozen=True)
class Location:
    """A filesystem and a path inside it; ``uri`` is what the user wrote (normalised)."""

    fs: pafs.FileSystem
    path: str
    uri: str

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith(S3_SCHEME)

    def join(self, *parts: str) -> Location:
        path = posixpath.join(self.path, *parts)
        uri = posixpath.join(self.uri, *parts)
        return Location(self.fs, path, uri)

    def __str__(self) -> str:
        return self.uri


def is_s3(uri: str) -> bool:
    return str(uri).startswith(S3_SCHEME)


def resolve(uri: str | os.PathLike[str], cfg: StorageConfig | None = None) -> Location:
    """Resolve a local path or ``s3://bucket/prefix`` to a :class:`Location`."""
    uri = os.fspath(uri)
    if not uri:
        raise ConfigError("an empty path was given where a local path or s3://bucket/prefix is expected")
    cfg = cfg or StorageConfig()
    if is_s3(uri):
        path = uri[len(S3_SCHEME):].strip("/")
        if not path:
            raise ConfigError(f"{uri!r} names no bucket: use s3://bucket/prefix")
        return Location(s3_filesystem(cfg), path, S3_SCHEME + path)
    if "://" in uri and not uri.startswith("file://"):
        scheme = uri.split("://", 1)[0]
        raise ConfigError(f"unsupported URI scheme {scheme!r} in {uri!r}: use a local path or s3://bucket/prefix")
    path = os.path.abspath(uri.removeprefix("file://"))
    return Location(pafs.LocalFileSystem(), path, path)


def _env(*names: str) -> str | None:
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    return None


def s3_options(cfg: StorageConfig) -> dict[str, Any]:
    """Keyword arguments for ``pyarrow.fs.S3FileSystem`` from the config and the AWS environment."""
    opts: dict[str, Any] = {}
    endpoint = cfg.endpoint_url or _env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        opts.update(endpoint_override=host.rstrip("/"), scheme=scheme)
    region = cfg.region or _env("AWS_REGION", "AWS_DEFAULT_REGION")
    if region or endpoint:
        opts["region"] = region or "us-east-1"
    if cfg.anonymous:
        opts["anonymous"] = True
    elif cfg.access_key_id:
        opts.update(access_key=cfg.access_key_id, secret_key=cfg.secret_access_key)
        if cfg.session_token:
            opts["session_token"] = cfg.session_token
    elif cfg.profile:
        opts.update(_profile_credentials(cfg.profile))
    return opts


def _profile_credentials(profile: str) -> dict[str, str]:
    import botocore.exceptions
    import botocore.session

    try:
        creds = botocore.session.Session(profile=profile).get_credentials()
    except botocore.exceptions.ProfileNotFound:
        raise ConfigError(f"storage.profile={profile!r} is not a profile in your AWS config files") from None
    if creds is None:
        raise ConfigError(f"storage.profile={profile!r} has no credentials")
    frozen = creds.get_frozen_credentials()
    out = {"access_key": frozen.access_key, "secret_key": frozen.secret_key}
    if frozen.token:
        out["session_token"] = frozen.token
    return out


def s3_filesystem(cfg: StorageConfig) -> pafs.S3FileSystem:
    """A pyarrow S3 filesystem for ``cfg`` (see :func:`s3_options`)."""
    return pafs.S3FileSystem(**s3_options(cfg))


# queries -------------------------------------------------------------------------------------
def exists(loc: Location) -> bool:
    return loc.fs.get_file_info(loc.path).type != pafs.FileType.NotFound


def is_dir(loc: Location) -> bool:
    return loc.fs.get_file_info(loc.path).type == pafs.FileType.Directory


def list_files(loc: Location, suffix: str = "", recursive: bool = False) -> list[str]:
    """Sorted paths of visible files under ``loc`` ending with ``suffix`` (hidden names skipped)."""
    selector = pafs.FileSelector(loc.path, allow_not_found=True, recursive=recursive)
    out = []
    for info in loc.fs.get_file_info(selector):
        rel = posixpath.relpath(info.path, loc.path)
        hidden = any(part.startswith((".", "_")) for part in rel.split("/"))
        if info.type == pafs.FileType.File and info.path.endswith(suffix) and not hidden:
            out.append(info.path)
    return sorted(out)


def read_bytes(loc: Location) -> bytes:
    try:
        with loc.fs.open_input_stream(loc.path) as fh:
            return fh.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{loc.uri} does not exist") from None


def read_json(loc: Location) -> Any:
    return json.loads(read_bytes(loc).decode("utf-8"))


# atomic writes -------------------------------------------------------------------------------
def _tmp_name(path: str) -> str:
    head, tail = posixpath.split(path)
    return posixpath.join(head, f".{tail}.tmp-{uuid.uuid4().hex[:12]}")


_TMP_NAME = re.compile(r"(^|/)\.([^/]+)\.tmp-[0-9a-f]{12}$")


def visible_path(path: str) -> str:
    """The file a temporary name of :func:`_tmp_name` becomes (any other path unchanged)."""
    return _TMP_NAME.sub(r"\1\2", path)


def _named(exc: OSError, uri: str) -> OSError:
    """``exc`` naming the file written to ``uri``: a full disk reports no file name, pyarrow
    reports none in ``filename``, and a temporary name is not the one the user gave."""
    if exc.errno is None or (exc.filename and visible_path(os.fspath(exc.filename)) == exc.filename):
        return exc
    return OSError(exc.errno, os.strerror(exc.errno), uri)  # errno picks the subclass


def ensure_dir(loc: Location) -> None:
    if not loc.is_s3:  # S3 has no directories; prefixes appear with their first object
        try:
            loc.fs.create_dir(loc.path, recursive=True)
        except OSError as exc:
            raise _named(exc, loc.uri) from None


@contextlib.contextmanager
def atomic_local_path(loc: Location) -> Iterator[str]:
    """Yield a local file path to write; on success it becomes ``loc`` in one step.

    Locally the temporary file is a hidden sibling renamed over the destination; on S3 it is a
    local temporary file uploaded in one request once complete. On error nothing is published
    and the temporary file is removed.
    """
    if loc.is_s3:
        fd, tmp = tempfile.mkstemp(prefix=".synthface-upload-")
        os.close(fd)
        try:
            yield tmp
            with open(tmp, "rb") as fh:
                _put(loc, fh.read())
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
        return
    os.makedirs(os.path.dirname(loc.path) or ".", exist_ok=True)
    tmp = _tmp_name(loc.path)
    try:
        yield tmp
        os.replace(tmp, loc.path)
    except OSError as exc:
        named = _named(exc, loc.uri)
        if named is exc:
            raise
        raise named from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def _put(loc: Location, data: bytes) -> None:
    """Upload ``data`` as one object; it becomes visible only when the request completes."""
    with loc.fs.open_output_stream(loc.path) as out:
        out.write(data)


def atomic_write_bytes(loc: Location, data: bytes) -> None:
    """Write ``data`` to ``loc`` atomically (see :func:`atomic_local_path`)."""
    if loc.is_s3:
        _put(loc, data)
        return
    with atomic_local_path(loc) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_json(loc: Location, obj: Any) -> None:
    atomic_write_bytes(loc, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def atomic_write_text(loc: Location, text: str) -> None:
    atomic_write_bytes(loc, text.encode("utf-8"))


def publish_dir(local_dir: str, loc: Location, marker: str) -> None:
    """Publish the local folder ``local_dir`` as ``loc``, replacing what was there.

    Locally the folder is copied to a hidden sibling and renamed into place (the old folder is
    removed only after the copy is complete). On S3 the files are uploaded one by one and the
    file named ``marker`` (relative path) last: a reader that checks for the marker never sees
    a half-written folder.
    """
    files = sorted(
        os.path.relpath(os.path.join(root, name), local_dir)
        for root, _, names in os.walk(local_dir) for name in names
    )
    if marker not in files:
        raise FileNotFoundError(f"{marker} is missing from {local_dir}: refusing to publish it")
    if loc.is_s3:
        for rel in [f for f in files if f != marker] + [marker]:
            with open(os.path.join(local_dir, rel), "rb") as fh:
                _put(loc.join(*rel.split(os.sep)), fh.read())
        return
    import shutil

    os.makedirs(os.path.dirname(loc.path) or ".", exist_ok=True)
    tmp, old = _tmp_name(loc.path), _tmp_name(loc.path)
    shutil.copytree(local_dir, tmp)
    _make_readable(tmp)
    if os.path.exists(loc.path):
        os.replace(loc.path, old)
    os.replace(tmp, loc.path)
    shutil.rmtree(old, ignore_errors=True)


def _make_readable(root: str) -> None:
    """Folders 0755, files 0644: temporary folders (0700) and some writers (0600) are private."""
    os.chmod(root, 0o755)
    for here, dirs, names in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(here, name), 0o755)
        for name in names:
            os.chmod(os.path.join(here, name), 0o644)


@contextlib.contextmanager
def local_copy(loc: Location) -> Iterator[str]:
    """A local folder holding the folder ``loc``: its own path when local, else a temporary
    download of every object under the prefix (removed on exit). For loaders that read local
    files only (e.g. exported models)."""
    if not loc.is_s3:
        yield loc.path
        return
    with tempfile.TemporaryDirectory(prefix="synthface-download-") as tmp:
        files = list_files(loc, recursive=True)
        if not files:
            raise FileNotFoundError(f"{loc.uri} holds no files")
        for path in files:
            rel = posixpath.relpath(path, loc.path)
            target = os.path.join(tmp, *rel.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with loc.fs.open_input_stream(path) as src, open(target, "wb") as dst:
                dst.write(src.read())
        yield tmp


# replacing a complete folder ------------------------------------------------------------------
def _sibling(loc: Location, suffix: str) -> Location:
    head, tail = posixpath.split(loc.path.rstrip("/"))
    uhead, _ = posixpath.split(loc.uri.rstrip("/"))
    name = f".{tail}.{suffix}"
    return Location(loc.fs, posixpath.join(head, name), posixpath.join(uhead, name))


def replacement_of(loc: Location) -> Location:
    """The hidden sibling ``.<name>.replacing`` where an overwrite of the folder ``loc`` is
    written while the folder itself stays as it is (see :func:`replace_folder`)."""
    return _sibling(loc, "replacing")


def remove_folder(loc: Location, marker: str | None = None) -> None:
    """Delete every file under ``loc`` (hidden ones too), the file ``marker`` first so the folder
    never looks complete half-deleted."""
    if marker and exists(loc.join(marker)):
        delete_file(loc.join(marker))
    if not loc.is_s3:
        import shutil

        shutil.rmtree(loc.path, ignore_errors=True)
        return
    for path in list_all(loc):
        loc.fs.delete_file(path)


def replace_folder(new: Location, loc: Location, marker: str) -> None:
    """Make the complete folder ``new`` (it holds ``marker``) the folder ``loc``, replacing what
    ``loc`` held only now that its replacement exists.

    Locally two renames (``loc`` aside to ``.<name>.replaced``, ``new`` into place), then the old
    folder is deleted. On S3 (no renames) the old ``marker`` goes first, then the old objects;
    ``new``'s objects are copied server-side, ``marker`` last, and ``new`` is deleted, its marker
    first. Killed at any point, :func:`finish_replacement` completes the swap on the next run:
    ``new`` is deleted only after ``loc`` holds all of it."""
    if not exists(new.join(marker)):
        raise FileNotFoundError(f"{new.uri} holds no {marker}: it is not complete, refusing to publish it")
    if not loc.is_s3:
        old = _sibling(loc, "replaced")
        if os.path.exists(loc.path):
            if os.path.exists(old.path):
                remove_folder(old)
            os.replace(loc.path, old.path)
        os.replace(new.path, loc.path)
        remove_folder(old)
        return
    remove_folder(loc, marker)
    files = [f for f in list_all(new) if posixpath.relpath(f, new.path) != marker]
    for path in files + [new.join(marker).path]:
        new.fs.copy_file(path, posixpath.join(loc.path, posixpath.relpath(path, new.path)))
    remove_folder(new, marker)


def finish_replacement(loc: Location, marker: str) -> bool:
    """Complete an overwrite of ``loc`` that was killed: a complete replacement (``marker``
    present) is swapped in; an incomplete one stays for its run to resume. Locally a leftover
    ``.<name>.replaced`` is deleted once ``loc`` is complete again. Returns True if it swapped."""
    new = replacement_of(loc)
    swapped = exists(new.join(marker))
    if swapped:
        replace_folder(new, loc, marker)
    old = _sibling(loc, "replaced")
    if not loc.is_s3 and os.path.exists(old.path) and exists(loc.join(marker)):
        remove_folder(old)
    return swapped


def list_all(loc: Location) -> list[str]:
    """Sorted paths of every file under ``loc``, hidden ones included."""
    selector = pafs.FileSelector(loc.path, allow_not_found=True, recursive=True)
    return sorted(i.path for i in loc.fs.get_file_info(selector) if i.type == pafs.FileType.File)


def delete_file(loc: Location) -> None:
    with contextlib.suppress(FileNotFoundError):
        loc.fs.delete_file(loc.path)


def describe(cfg: StorageConfig) -> dict[str, Any]:
    """What the storage layer will use, without secrets (for logs and dry runs)."""
    opts = s3_options(dataclasses.replace(cfg, profile=None))
    for secret in ("access_key", "secret_key", "session_token"):
        if secret in opts:
            opts[secret] = "<redacted>"
    if cfg.profile:
        opts["profile"] = cfg.profile
    return opts


def _not_parquet(loc: Location, key: str, made_by: str, exc: Exception) -> ValueError:
    where = f"{key}: " if key else ""
    fix = f"give the table `synthface {made_by}` writes" if made_by else "give a Parquet table"
    detail = str(exc).replace(" '<Buffer>'", "")
    return ValueError(f"{where}{loc.uri} is not a Parquet file ({detail}); {fix}")


def read_parquet(loc: Location, key: str = "", made_by: str = ""):
    """One Parquet file (local or s3://) as a ``pyarrow.Table``. A file that is not Parquet raises
    ``ValueError`` naming it (``key``: the setting that gave it; ``made_by``: the command that
    writes such a table)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    data = read_bytes(loc)
    try:
        return pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise _not_parquet(loc, key, made_by, exc) from None


@contextlib.contextmanager
def open_parquet(loc: Location, key: str = "", made_by: str = ""):
    """One Parquet file (local or s3://) opened for reading in parts (``pyarrow.parquet.ParquetFile``:
    its footer read, row groups and batches fetched on demand, by ranged reads on S3); a file
    that is not Parquet raises ``ValueError`` as :func:`read_parquet` does."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with loc.fs.open_input_file(loc.path) as fh:
        try:
            pf = pq.ParquetFile(fh)
        except (pa.ArrowInvalid, OSError) as exc:
            raise _not_parquet(loc, key, made_by, exc) from None
        yield pf


@dataclass
class FileOutput:
    """One output file (local or s3://); an existing one is replaced only with ``overwrite``."""

    path: str = ""
    overwrite: bool = False

    def location(self, store, what: str = "output.path") -> Location:
        """The resolved output, checked: set, and absent unless ``overwrite``."""
        if not self.path:
            raise ConfigError(f"{what} is required: where to write the result")
        loc = resolve(self.path, store)
        if exists(loc) and not self.overwrite:
            raise FileExistsError(f"{loc.uri} exists; set output.overwrite=true to replace it")
        return loc
