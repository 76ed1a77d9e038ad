"""``synthface train-generator``: train the identity-conditioned diffusion generator."""

from __future__ import annotations

import sys

from synthface_ray.commands.common import print_dry_run
from synthface_ray.train.generator import TrainGeneratorConfig as Config

HELP = "train the identity-conditioned diffusion generator (Ray Train + DeepSpeed)"
EXAMPLES = """\
  synthface train-generator --config jobs/train_generator.yaml      # ToyFaces, 2 CPU workers, ZeRO-2
  synthface train-generator --config jobs/train_generator.yaml --set optim.max_steps=50 --dry-run
  synthface train-generator --config jobs/train_generator_casia.yaml  # 8 GPUs, latent, bf16"""
SHORTCUTS = {"--data": "data.path", "--name": "run.name"}

__all__ = ["Config", "run"]


def _plan(cfg: Config, facts) -> list[str]:
    opt, sc = cfg.optim, cfg.scaling
    global_batch = opt.micro_batch * opt.grad_accum * sc.num_workers
    return [
        f"data: {facts.rows} images of {facts.identities} identities from {cfg.data.path} "
        f"(labels 0..{facts.max_label}, sources 0..{facts.max_source})",
        f"model: {cfg.generator.condition}-conditioned UNet {list(cfg.generator.block_out_channels)}"
        f", objective {cfg.objective.name}, ScoreAug {'on' if cfg.scoreaug.enabled else 'off'}",
        f"train {opt.max_steps} steps x {global_batch} images ({sc.num_workers} workers x "
        f"{opt.micro_batch} x {opt.grad_accum} accumulation), DeepSpeed ZeRO-{cfg.deepspeed.zero_stage}"
        f", precision {cfg.deepspeed.precision}, device {sc.device}",
        f"run folder {cfg.run_dir().uri} (re-running the same run.name resumes from its latest "
        f"checkpoint; checkpoint every {cfg.run.checkpoint_every} steps)",
        f"export the EMA weights to {cfg.export_dir().uri}",
    ]


def run(cfg: Config, dry_run: bool = False) -> int:
    from synthface_ray.train import generator_job

    if dry_run:  # the checks that need no cluster, then the plan (fit runs them itself)
        facts = generator_job.check_dataset(cfg)
        if cfg.scaling.device == "cpu":
            generator_job.check_device(cfg, use_gpu=False)
        print_dry_run("train-generator", cfg, _plan(cfg, facts))
        return 0
    import ray.train

    try:
        result = generator_job.fit(cfg)
    except ray.train.TrainingFailedError as exc:
        print(f"synthface train-generator: training failed: {exc}\nCheckpoints so far are in "
              f"{cfg.run_dir().uri}; run the same command again to resume from the latest one.",
              file=sys.stderr)
        return 1
    metrics = result.metrics or {}
    if "step" in metrics:
        done = f"trained to step {metrics['step']} (loss {metrics['loss']:.4f})"
    else:  # the latest checkpoint was already at optim.max_steps: nothing to train
        done = f"the run was already at optim.max_steps={cfg.optim.max_steps}; re-exported it"
    print(f"{done}; run folder {cfg.run_dir().uri}; EMA generator exported to {cfg.export_dir().uri}")
    return 0
