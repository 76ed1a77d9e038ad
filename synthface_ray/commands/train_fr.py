"""``synthface train-fr``: train the face-recognition model (IResNet + margin head)."""

from __future__ import annotations

from synthface_ray.commands.train_common import (
    global_batch_line,
    run_folder_line,
    run_training,
    trained_line,
)
from synthface_ray.train.fr_job import HOLDOUT_REPORT, read_heldout_report
from synthface_ray.train.recognition import TrainFRConfig as Config

__all__ = ["Config", "run"]


def _plan(cfg: Config, facts) -> list[str]:
    lines = [f"data: {s.rows} images of {s.identities} training identities from {s.path}, "
             f"{k} per micro-batch" for s, k in zip(facts.sources, facts.counts, strict=True)]
    if facts.heldout:
        lines.append(f"hold out {len(facts.heldout)} identities of source {cfg.holdout.source} "
                     f"for verification ({cfg.holdout.genuine} genuine + {cfg.holdout.impostor} "
                     "impostor pairs)")
    lines += [
        f"model: {cfg.backbone.name} (width {cfg.backbone.width}, {cfg.backbone.input_size}px, "
        f"{cfg.backbone.embedding_dim}-d) + {cfg.margin.name} over {facts.num_classes} classes, "
        f"optimizer {cfg.optim.name} lr {cfg.optim.lr}",
        global_batch_line(cfg),
        run_folder_line(cfg),
        f"export the backbone, class centres and class table to {cfg.export_dir().uri}",
    ]
    return lines


def run(cfg: Config, dry_run: bool = False) -> int:
    code, result = run_training("train-fr", "fr", cfg, dry_run, _plan)
    if code == 0 and not dry_run:
        print(f"{trained_line(cfg, result)}; run folder {cfg.run_dir().uri}; FR backbone "
              f"exported to {cfg.export_dir().uri}")
        report = read_heldout_report(cfg.with_absolute_paths())
        if report is not None:
            print(f"held-out verification: accuracy {report['accuracy']:.4f} +- "
                  f"{report['accuracy_std']:.4f}, EER {report['eer']:.4f} "
                  f"({cfg.run_dir().join(HOLDOUT_REPORT).uri})")
    return code
