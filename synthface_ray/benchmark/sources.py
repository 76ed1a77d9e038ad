"""The faces sets of a benchmark before any training: what each holds (rows, identities, native
resolution), the overlap between real test sets and training sources (identity names, identical
image bytes), and the seeded budget subsets an arm trains on. Pure data-layer code: pyarrow and
numpy, local or s3:// through :mod:`synthface_ray.storage`; no Ray, no models."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from synthface_ray import storage
from synthface_ray.config import ConfigError
from synthface_ray.data import faces, schema
from synthface_ray.storage import StorageConfig


@dataclass
class SetFacts:
    """One faces set as read: ``labels`` per row (dataset order), the distinct ``identity``
    names when the set has that column, the first image's native (width, height), and for a
    test set the digest of every image -> its identity (label, or name when present)."""

    path: str
    labels: np.ndarray
    names: set[str] | None
    resolution: tuple[int, int] | None
    digests: dict[bytes, str] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(len(self.labels))

    @property
    def identities(self) -> int:
        return int(len(np.unique(self.labels)))


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _image_size(data: bytes | None) -> tuple[int, int] | None:
    from PIL import Image

    if not data:
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:  # a corrupt first image: the training feed reports it row by row
        return None


def check_complete(path: str, store: StorageConfig) -> None:
    """A dataset folder must hold its ``manifest.json`` (written last by every writer of the
    project): without it the folder is an interrupted write, not a dataset."""
    loc = storage.resolve(path, store)
    if not storage.exists(loc):
        raise FileNotFoundError(f"{loc.uri} does not exist: give an existing faces dataset")
    if not storage.is_dir(loc):
        return
    manifest = loc.join(faces.MANIFEST)
    if not storage.exists(manifest):
        raise FileNotFoundError(
            f"{loc.uri} has no {faces.MANIFEST}: an interrupted write is not a complete dataset; "
            "re-run the command that writes it (it resumes) or point at a complete dataset")
    if storage.read_json(manifest).get("rows") == 0:
        raise ConfigError(f"{loc.uri} has no rows (its {faces.MANIFEST} says 0): nothing to train or test on")


def read_facts(path: str, store: StorageConfig, *, digests: bool = False,
               match: dict[bytes, str] | None = None) -> tuple[SetFacts, set[str]]:
    """Stream a faces set once: its :class:`SetFacts` (with every image's digest when
    ``digests``) and the identities of ``match`` (digest -> identity) whose image bytes occur
    in it. Image bytes are read only when digests or ``match`` ask for them."""
    check_complete(path, store)
    dataset = faces.open_faces(path, store)
    head = dataset.head(1, columns=[schema.IMAGE]).column(schema.IMAGE)
    first = _image_size(head[0]["bytes"].as_py()) if len(head) else None
    want_bytes = digests or match is not None
    columns = [c for c in (schema.LABEL, schema.IDENTITY) if c in dataset.schema.names]
    labels, names, found, table_digests = [], None, set(), {}
    for batch in dataset.to_batches(columns=columns + ([schema.IMAGE] if want_bytes else [])):
        lab = batch.column(schema.LABEL).to_numpy(zero_copy_only=False)
        labels.append(lab)
        ident = batch.column(schema.IDENTITY).to_pylist() if schema.IDENTITY in columns else None
        if ident is not None:
            names = (names or set()) | {n for n in ident if n is not None}
        if want_bytes:
            blobs = batch.column(schema.IMAGE).field("bytes").to_pylist()
            for i, blob in enumerate(blobs):
                if blob is None:
                    continue
                d = _digest(blob)
                if digests:
                    table_digests[d] = ident[i] if ident and ident[i] else f"label {int(lab[i])}"
                if match is not None and d in match:
                    found.add(match[d])
    all_labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    if not len(all_labels):
        raise ConfigError(f"{path} has no rows: nothing to train or test on")
    return SetFacts(path, all_labels.astype(np.int64), names, first, table_digests), found


def name_overlap(test: SetFacts, source: SetFacts) -> list[str]:
    """Identity names present in both sets (sorted; empty when either has no names)."""
    if not test.names or not source.names:
        return []
    return sorted(test.names & source.names)


def overlap_message(test_name: str, where: str, kind: str, identities: list[str]) -> str:
    shown = ", ".join(identities[:10]) + (f" and {len(identities) - 10} more" if len(identities) > 10 else "")
    return (f"test set {test_name!r} overlaps the training source {where}: {len(identities)} "
            f"identit{'y' if len(identities) == 1 else 'ies'} share {kind} ({shown}). A test set "
            "must hold only people no arm trains on: remove them from one side (for ToyFaces, "
            "render the test set with toyfaces.first_identity past the training identities)")


# budgets -------------------------------------------------------------------------------------
def budget_rows(labels: np.ndarray, images: int | None, identities: int | None, seed: int) -> np.ndarray:
    """Sorted row indices of a budget subset: ``identities`` labels drawn at random, then
    ``images`` rows spread evenly over them (per-identity counts differ by at most one; within an
    identity, rows at random). ``None`` keeps all. Raises when a budget exceeds the set."""
    labels = np.asarray(labels)
    ids = np.unique(labels)
    rng = np.random.default_rng([seed, 0x5EED])
    if identities is not None:
        if identities > len(ids):
            raise ConfigError(f"identities budget {identities} exceeds the {len(ids)} identities available")
        ids = np.sort(rng.choice(ids, identities, replace=False))
    rows = np.flatnonzero(np.isin(labels, ids))
    if images is None:
        return rows
    if images > len(rows):
        raise ConfigError(f"images budget {images} exceeds the {len(rows)} images available"
                          + (f" in the {len(ids)} identities kept" if identities is not None else ""))
    # rank every row within its identity (random order), then take ranks 0, 1, 2, ... across
    # identities in a random identity order: an even spread
    order = rng.permutation(rows)
    lab = labels[order]
    ranks = np.zeros(len(order), np.int64)
    for ident in ids:
        at = np.flatnonzero(lab == ident)
        ranks[at] = np.arange(len(at))
    id_order = {int(v): i for i, v in enumerate(rng.permutation(ids))}
    key = ranks * len(ids) + np.array([id_order[int(v)] for v in lab], np.int64)
    return np.sort(order[np.argsort(key, kind="stable")[:images]])


def write_subset(path: str, store: StorageConfig, rows: np.ndarray, dest: storage.Location,
                 **metadata) -> dict:
    """Write the rows ``rows`` (sorted dataset positions) of a faces set as a new faces dataset
    at ``dest`` (streamed shard by shard; the manifest last). Returns the manifest."""
    writer = faces.FacesWriter(dest, overwrite=True)
    offset, keep = 0, np.asarray(rows, np.int64)
    for batch in faces.open_faces(path, store).to_batches():
        n = batch.num_rows
        lo, hi = np.searchsorted(keep, [offset, offset + n])
        if hi > lo:
            writer.write(pa.Table.from_batches([batch]).take(pa.array(keep[lo:hi] - offset)))
        offset += n
    return writer.close(command="benchmark", source=path, rows=int(len(keep)), **metadata)


__all__ = ["SetFacts", "budget_rows", "check_complete", "name_overlap", "overlap_message", "read_facts",
           "write_subset"]
