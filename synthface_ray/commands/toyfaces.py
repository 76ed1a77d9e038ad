"""``synthface toyfaces``: render the embedded ToyFaces dataset and a preview grid."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from synthface_ray import config, storage
from synthface_ray.commands.common import (
    OutputConfig,
    print_dry_run,
    write_resolved_config,
)
from synthface_ray.data.faces import FacesWriter
from synthface_ray.data.toyfaces import ToyFacesConfig, grid_image, iter_toyfaces
from synthface_ray.limits import check_disk
from synthface_ray.progress import progress_bar
from synthface_ray.storage import StorageConfig


@dataclass
class GridConfig:
    enabled: bool = True
    identities: int = 8
    images: int = 8

    def __post_init__(self) -> None:
        config.check_range("grid.identities", self.identities, 1, 64)
        config.check_range("grid.images", self.images, 1, 64)


@dataclass
class Config:
    toyfaces: ToyFacesConfig = field(default_factory=ToyFacesConfig)
    output: OutputConfig = field(default_factory=lambda: OutputConfig(path="runs/toyfaces"))
    grid: GridConfig = field(default_factory=GridConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)


def run(cfg: Config, dry_run: bool = False) -> int:
    tf = cfg.toyfaces
    total = tf.identities * tf.images_per_identity
    out = storage.resolve(cfg.output.path, cfg.storage)
    if dry_run:
        shards = -(-total // cfg.output.rows_per_shard)
        print_dry_run("toyfaces", cfg, [
            f"render {tf.identities} identities (labels {tf.first_identity}..{tf.numbers()[-1]}) x "
            f"{tf.images_per_identity} images = {total} "
            f"images at {tf.resolution}x{tf.resolution}",
            f"write {shards} shard(s), manifest.json and config.yaml to {out.uri}",
            f"write grid.png ({cfg.grid.identities}x{cfg.grid.images})" if cfg.grid.enabled else "no grid",
        ])
        return 0
    start = time.perf_counter()
    tables = iter_toyfaces(tf)
    first = next(tables)  # its size per row is the estimate of what the whole set needs on disk
    check_disk("toyfaces.identities x toyfaces.images_per_identity", out, total, first.nbytes / first.num_rows,
               "lower them, or write to a disk with more space (--out)")
    writer = FacesWriter(out, cfg.output.rows_per_shard, cfg.output.overwrite)
    with progress_bar(total, "toyfaces") as bar:
        for table in itertools.chain([first], tables):
            writer.write(table)
            bar.update(table.num_rows)
    write_resolved_config(writer.folder, cfg, "toyfaces")  # the replacement when overwriting
    if cfg.grid.enabled:
        with storage.atomic_local_path(writer.folder.join("grid.png")) as tmp:
            grid_image(tf, cfg.grid.identities, cfg.grid.images).save(tmp, format="PNG")
    manifest = writer.close(command="toyfaces", config=config.to_dict(cfg))
    elapsed = time.perf_counter() - start
    print(f"wrote {manifest['rows']} images of {tf.identities} identities to {out.uri} "
          f"in {len(manifest['files'])} shard(s), {elapsed:.1f} s ({manifest['rows'] / elapsed:.0f} img/s)")
    if cfg.grid.enabled:
        print(f"preview grid: {out.join('grid.png').uri}")
    return 0
