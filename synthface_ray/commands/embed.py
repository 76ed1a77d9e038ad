"""``synthface embed``: class centres of a labelled faces set -> an identities table."""

from __future__ import annotations

from dataclasses import dataclass, field

from synthface_ray.commands.common import print_dry_run, write_parquet
from synthface_ray.commands.fr_common import embed_faces
from synthface_ray.config import ConfigError
from synthface_ray.data.identities import CLASS_CENTER, class_centers, identities_table
from synthface_ray.models.recognition.section import ModelSection
from synthface_ray.storage import FileOutput, StorageConfig


@dataclass
class InputSection:
    path: str = ""
    allow_incomplete: bool = False  # read a dataset without its manifest (an interrupted run), with a warning


@dataclass
class Config:
    model: ModelSection = field(default_factory=ModelSection)
    input: InputSection = field(default_factory=InputSection)
    output: FileOutput = field(default_factory=FileOutput)  # identities Parquet (class_center)
    storage: StorageConfig = field(default_factory=StorageConfig)


def run(cfg: Config, dry_run: bool = False) -> int:
    if not cfg.input.path:
        raise ConfigError("input.path is required (--data)")
    out = cfg.output.location(cfg.storage, "output.path (--out)")
    if dry_run:
        print_dry_run("embed", cfg, [f"embed {cfg.input.path}, write class centres to {out.uri}"])
        return 0
    embedder = cfg.model.load()
    emb, labels = embed_faces(embedder, cfg.input.path, cfg.storage, cfg.model.batch_size,
                              cfg.input.allow_incomplete)
    ids, centres = class_centers(emb, labels)
    table = identities_table(ids, centres, CLASS_CENTER)
    write_parquet(table, out, cfg, "embed")
    print(f"wrote {table.num_rows} class centres ({centres.shape[1]}-d) of {len(labels)} images to {out.uri}")
    return 0
