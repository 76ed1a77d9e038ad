"""Every check of a benchmark that can fail before a trial starts, and the plan it prints:
test sets and sources complete and non-empty, no test identity in a training source (names or
identical image bytes), budgets within what each source holds, every arm's train-fr config valid
with enough rows for one step, and the native resolutions (every image is resized to the
backbone's input size by the same decoder; differing resolutions are reported, not refused)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from synthface_ray import config, storage
from synthface_ray.benchmark.config import RANDOM_INIT, Config
from synthface_ray.benchmark.sources import (
    SetFacts,
    budget_rows,
    name_overlap,
    overlap_message,
    read_facts,
)
from synthface_ray.benchmark.trial import TrialSpec, dataset_signature, train_config
from synthface_ray.config import ConfigError
from synthface_ray.evaluate.verification import far_resolution_warnings


def _absolute(path: str) -> str:
    return path if storage.is_s3(path) else os.path.abspath(path)


#: train-fr keys holding a local path that the benchmark does not set itself (its own: data,
#: run and export folders): made absolute on the driver, since trials run in other directories
TRAIN_PATH_KEYS = ("data.same_identity.fr_model",)


def _absolute_keys(dotted: dict) -> dict:
    """``arms[].train`` / ``train.set`` (dotted keys) with the :data:`TRAIN_PATH_KEYS` absolute."""
    return {k: _absolute(v) if k in TRAIN_PATH_KEYS and isinstance(v, str) else v for k, v in dotted.items()}


def with_absolute_paths(cfg: Config) -> Config:
    """A copy whose local paths (datasets, output, train-fr path keys) are absolute (trials run
    in other working directories)."""
    arms = [dataclasses.replace(a, sources=[dataclasses.replace(s, path=_absolute(s.path)) for s in a.sources],
                                train=_absolute_keys(a.train))
            for a in cfg.arms]
    test = dataclasses.replace(cfg.test, sets=[dataclasses.replace(t, path=_absolute(t.path))
                                               for t in cfg.test.sets])
    output = dataclasses.replace(cfg.output, path=_absolute(cfg.output.path))
    train = dataclasses.replace(cfg.train, set=_absolute_keys(cfg.train.set))
    return dataclasses.replace(cfg, arms=arms, test=test, output=output, train=train)


def base_train(cfg: Config) -> dict:
    """The train-fr config every arm starts from: ``train.config`` plus ``train.set`` (the
    YAML's :data:`TRAIN_PATH_KEYS` made absolute)."""
    if not cfg.train.config:
        raise ConfigError("train.config is required: the synthface train-fr YAML every arm trains "
                          "with, e.g. synthface_ray/demo_jobs/train_fr.yaml")
    data = config.read_yaml(cfg.train.config)
    for key in TRAIN_PATH_KEYS:
        node = data
        for part in key.split(".")[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        leaf = key.rsplit(".", 1)[-1]
        if isinstance(node, dict) and isinstance(node.get(leaf), str):
            data = config.apply_dotted(data, {key: _absolute(node[leaf])})
    return config.apply_dotted(data, cfg.train.set, "train.set key")


def _named(exc: Exception, what: str) -> Exception:
    """The same kind of error, its message prefixed with the arm or test set it is about."""
    kind = FileNotFoundError if isinstance(exc, FileNotFoundError) else ConfigError
    return kind(f"{what}: {exc}")


def _test_facts(cfg: Config) -> dict[str, SetFacts]:
    out = {}
    for t in cfg.test.sets:
        try:
            facts, _ = read_facts(t.path, cfg.storage, digests=cfg.test.check_bytes)
        except (FileNotFoundError, ValueError) as exc:
            raise _named(exc, f"test set {t.name!r}") from None
        ids, counts = np.unique(facts.labels, return_counts=True)
        if len(ids) < 2 or counts.max() < 2:
            raise ConfigError(f"test set {t.name!r} ({t.path}) has {len(ids)} identities, at most "
                              f"{counts.max()} image(s) each: verification needs 2 or more identities "
                              "and some with 2 or more images")
        out[t.name] = facts
    return out


def _source_facts(cfg: Config, tests: dict[str, SetFacts]) -> dict[str, SetFacts]:
    """Facts of every distinct training source; refuses overlap with a test set."""
    match = {d: f"{name}: {ident}" for name, f in tests.items() for d, ident in f.digests.items()}
    out: dict[str, SetFacts] = {}
    for arm in cfg.arms:
        for src in arm.sources:
            where = f"{src.path} (arm {arm.name})"
            if src.path not in out:
                try:
                    out[src.path], found = read_facts(src.path, cfg.storage,
                                                      match=match if cfg.test.check_bytes else None)
                except (FileNotFoundError, ValueError) as exc:
                    raise _named(exc, f"arm {arm.name!r}") from None
                for name in tests:
                    same = sorted(x.split(": ", 1)[1] for x in found if x.startswith(f"{name}: "))
                    if same:
                        raise ConfigError(overlap_message(name, where, "identical image bytes", same))
            for name, test in tests.items():
                shared = name_overlap(test, out[src.path])
                if shared:
                    raise ConfigError(overlap_message(name, where, "identity names", shared))
    return out


def arm_sizes(arm, facts: dict[str, SetFacts], seed: int) -> tuple[int, int]:
    """``(images, identities)`` an arm trains on at ``seed`` (its budgets applied)."""
    images = identities = 0
    for src in arm.sources:
        labels = facts[src.path].labels
        kept = budget_rows(labels, src.images, src.identities, seed)
        images, identities = images + len(kept), identities + len(np.unique(labels[kept]))
    return images, identities


def resolve_matches(cfg: Config, facts: dict[str, SetFacts]) -> tuple[Config, dict[str, str]]:
    """Arms with ``match`` get their first source's budgets set to the matched arm's sizes (and no
    ``match`` any more); returns the config and {arm: the arm it was sized like}."""
    arms, sized = [], {}
    for arm in cfg.arms:
        if arm.match is not None:
            images, identities = arm_sizes(cfg.arm(arm.match), facts, cfg.seeds[0])
            src = dataclasses.replace(arm.sources[0], images=images, identities=identities)
            sized[arm.name] = arm.match
            arm = dataclasses.replace(arm, sources=[src, *arm.sources[1:]], match=None)
        arms.append(arm)
    return dataclasses.replace(cfg, arms=arms), sized


def _check_arm(cfg: Config, spec: TrialSpec, arm, facts: dict[str, SetFacts], like: str | None) -> str:
    """Budgets and the train config of one arm; returns its plan line."""
    from synthface_ray.train.fr_job import SourceFacts, batch_counts  # lazy: imports torch

    rows, parts = [], []
    for src in arm.sources:
        labels = facts[src.path].labels
        for seed in cfg.seeds:
            try:
                kept = budget_rows(labels, src.images, src.identities, seed)
            except ConfigError as exc:
                fix = (f"it is sized like arm {like!r} (match), which is larger than this source: match a "
                       "smaller arm or give a larger source" if like and src is arm.sources[0] else "lower the budget")
                raise ConfigError(f"arm {arm.name!r}, source {src.path}: {exc}; {fix}") from None
        rows.append(SourceFacts(src.path, len(kept), len(np.unique(labels[kept])), np.zeros(0, np.int64)))
        parts.append(f"{len(kept)} images of {rows[-1].identities} identities from {src.path} (weight {src.weight:g})")
    tcfg = train_config(spec, arm.name, cfg.seeds[0], [(s.path, s.weight) for s in arm.sources], spec.folder)
    try:
        batch_counts(tcfg, rows)
    except ConfigError as exc:
        raise ConfigError(f"arm {arm.name!r}: {exc}") from None
    sized = f" (first source sized like arm {like})" if like else ""
    return (f"arm {arm.name}: " + " + ".join(parts) + sized + f"; {tcfg.optim.max_steps} steps of "
            f"{tcfg.optim.micro_batch * tcfg.optim.grad_accum * tcfg.scaling.num_workers} images")


def _resolution_lines(tests: dict[str, SetFacts], sources: dict[str, SetFacts], size: int) -> list[str]:
    seen = {f.path: f.resolution for f in [*tests.values(), *sources.values()]}
    sizes = {r for r in seen.values() if r is not None}
    if len(sizes) <= 1:
        native = next(iter(sizes), None)
        return [f"native resolution {f'{native[0]}x{native[1]}' if native else 'unknown'}; every image "
                f"is resized to the backbone's {size}x{size}"]
    listed = ", ".join(f"{p} {r[0]}x{r[1]}" if r else f"{p} ?" for p, r in seen.items())
    return [f"WARNING: the sets differ in native resolution ({listed}); every image, training and "
            f"test, is resized to the backbone's {size}x{size} by the same decoder, so arms stay "
            "comparable, but a low-resolution source loses detail the others keep"]


def preflight(cfg: Config) -> tuple[TrialSpec, list[str]]:
    """Check everything before any trial; returns the trials' spec and the plan lines."""
    cfg = with_absolute_paths(cfg)
    train = base_train(cfg)
    folder = storage.resolve(cfg.output.path, cfg.storage).join(cfg.output.name).uri
    tests = _test_facts(cfg)
    sources = _source_facts(cfg, tests)
    cfg, sized = resolve_matches(cfg, sources)
    signatures = {t.path: dataset_signature(t.path, cfg.storage) for t in cfg.test.sets}
    signatures.update({p: dataset_signature(p, cfg.storage) for p in sources})
    spec = TrialSpec(cfg, train, folder, signatures)
    lines = [_check_arm(cfg, spec, arm, sources, sized.get(arm.name)) for arm in cfg.arms]
    base = train_config(spec, RANDOM_INIT, cfg.seeds[0], [], folder)
    if cfg.random_init:
        lines.append(f"arm {RANDOM_INIT}: the untrained {base.backbone.name} (the floor), no training")
    for t in cfg.test.sets:
        f = tests[t.name]
        lines.append(f"test set {t.name}: {f.rows} images of {f.identities} identities from {t.path}; "
                     f"{cfg.test.genuine} genuine + {cfg.test.impostor} impostor pairs, {cfg.test.folds} folds")
    lines += [f"WARNING: {w}" for w in far_resolution_warnings(cfg.test.impostor)]
    lines += _resolution_lines(tests, sources, base.backbone.input_size)
    lines.append(f"{len(cfg.arm_names)} arms x {len(cfg.seeds)} seeds {cfg.seeds} = "
                 f"{len(cfg.arm_names) * len(cfg.seeds)} trials, {cfg.resources.concurrent} at a time; "
                 f"reference arm {cfg.reference_arm}; -> {folder}")
    return spec, lines


__all__ = ["base_train", "preflight", "with_absolute_paths"]
