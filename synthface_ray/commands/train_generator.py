"""``synthface train-generator``: train the identity-conditioned diffusion generator."""

from __future__ import annotations

from synthface_ray.commands.train_common import (
    global_batch_line,
    run_folder_line,
    run_training,
    trained_line,
)
from synthface_ray.train.generator import TrainGeneratorConfig as Config

__all__ = ["Config", "run"]


def _plan(cfg: Config, facts) -> list[str]:
    return [
        f"data: {facts.rows} images of {facts.identities} identities from {cfg.data.path} "
        f"(labels 0..{facts.max_label}, sources 0..{facts.max_source})",
        f"model: {cfg.generator.condition}-conditioned UNet {list(cfg.generator.block_out_channels)}"
        f", objective {cfg.objective.name}, ScoreAug {'on' if cfg.scoreaug.enabled else 'off'}",
        global_batch_line(cfg),
        run_folder_line(cfg),
        f"export the EMA weights to {cfg.export_dir().uri}",
    ]


def run(cfg: Config, dry_run: bool = False) -> int:
    code, result = run_training("train-generator", "generator", cfg, dry_run, _plan)
    if code == 0 and not dry_run:
        print(f"{trained_line(cfg, result)}; run folder {cfg.run_dir().uri}; EMA generator "
              f"exported to {cfg.export_dir().uri}")
    return code
