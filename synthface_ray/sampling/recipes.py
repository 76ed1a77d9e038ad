"""Sampler configuration and named recipes.

A recipe is a named set of :class:`SamplerConfig` settings; a YAML ``sampler`` section names one
and overrides any of its keys, e.g. ScoreMix pairs + an AdaptDiff negative + UIFace two-stage::

    sampler:
      recipe: scoremix_adaptdiff_uiface
      steps: 30

The per-row parts (which identities are mixed with which weights, which negative) come from the
plan table, not from the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from synthface_ray.config import ConfigError, check_choice, check_range, from_dict, to_dict
from synthface_ray.models.parameterization import SPACINGS
from synthface_ray.sampling.schedules import NegativeConfig

SOLVER_NAMES = ("ddim", "ddpm", "heun", "euler")


@dataclass
class TwoStageConfig:
    """UIFace two-stage sampling (eq. 4): the empty context while ``t/T > t0``, then the
    guided identity condition. ``mode``: off, fixed (``t0``, as t/T: UIFace's fixed 500 of 1000
    is 0.5) or adaptive (per sample, eq. 5: the first step where the temporal difference of the
    empty context's cross-attention maps falls below ``th`` after being above it; at
    ``fallback_t0`` at the latest, as UIFace's released code does at step 500).
    ``attention_injection``: UIFace eq. 6-7 in the second stage. ``layers``: the UNet attention
    modules (names or name prefixes, e.g. ``up_blocks``) whose processors inject and record;
    null = every ``attn1``/``attn2`` of the transformer blocks."""

    mode: str = "off"
    t0: float = 0.5
    th: float = 0.006
    fallback_t0: float = 0.5
    attention_injection: bool = False
    layers: list[str] | None = None

    def __post_init__(self) -> None:
        check_choice("two_stage.mode", self.mode, ("off", "fixed", "adaptive"))
        check_range("two_stage.t0", self.t0, 0.0, 1.0)
        check_range("two_stage.fallback_t0", self.fallback_t0, 0.0, 1.0)
        if not 0 < self.th < 1:
            raise ConfigError(f"two_stage.th={self.th} is out of range: the threshold on the "
                              "normalised attention-map difference must be in (0, 1) (UIFace: 0.005)")


@dataclass
class SamplerConfig:
    """``solver``: ddim (``eta`` in [0, 1]), ddpm (= ddim with eta 1), heun (EDM Algorithm 1,
    CASD Algorithm 2) or euler (= ddim eta 0). ``spacing``: auto (trailing for epsilon models,
    karras for EDM), uniform, trailing, karras. ``cfg_scale`` w: ``(1 + w) D(c) - w D(c_e)``.
    ``source``: CASD's source label pinned at sampling (0 = real; null for models without
    source labels). ``clip_denoised``: clamp x0 estimates to [-1, 1] (pixel-space models)."""

    recipe: str = "conditional"
    solver: str = "ddim"
    steps: int = 50
    eta: float = 0.0
    spacing: str = "auto"
    cfg_scale: float = 0.0
    negative: NegativeConfig = field(default_factory=NegativeConfig)
    two_stage: TwoStageConfig = field(default_factory=TwoStageConfig)
    source: int | None = None
    clip_denoised: bool = False

    def __post_init__(self) -> None:
        check_choice("sampler.recipe", self.recipe, RECIPES)
        check_choice("sampler.solver", self.solver, SOLVER_NAMES)
        check_range("sampler.steps", self.steps, 1)
        check_range("sampler.eta", self.eta, 0.0, 1.0)
        check_choice("sampler.spacing", self.spacing, SPACINGS)
        check_range("sampler.cfg_scale", self.cfg_scale, 0.0)
        if self.source is not None:
            check_range("sampler.source", self.source, 0)

    def resolved_eta(self) -> float:
        return {"ddpm": 1.0, "euler": 0.0}.get(self.solver, self.eta)

    @classmethod
    def from_section(cls, section: dict[str, Any], prefix: str = "sampler.") -> SamplerConfig:
        """How a config file's ``sampler`` section becomes this type when the job loads (once):
        :func:`resolve`; errors name the section where it sits (``prefix``, e.g. ``preview.sampler.``)."""
        try:
            return resolve(section, prefix)
        except ConfigError as exc:
            text = str(exc)
            if prefix == "sampler." or not text.startswith("sampler."):
                raise
            raise ConfigError(prefix.removesuffix("sampler.") + text) from None

    def resolved_solver(self) -> str:
        """The key of :data:`synthface_ray.sampling.solvers.SOLVERS` that runs ``solver`` (ddpm is
        DDIM with eta 1)."""
        return {"ddpm": "ddim"}.get(self.solver, self.solver)


#: recipe name -> the settings it implies (any of them can be overridden)
RECIPES: dict[str, dict[str, Any]] = {
    "conditional": {},
    "cfg": {"cfg_scale": 1.0},
    "scoremix": {},  # pairs at 0.5/0.5 come from the plan's mix_weights
    "scoremix_cfg": {"cfg_scale": 1.0},
    "negfacediff": {"negative": {"schedule": "constant", "w_max": 0.5}},
    "adaptdiff": {"negative": {"schedule": "linear", "w_max": 1.0}},
    "uiface": {"cfg_scale": 1.0, "two_stage": {"mode": "fixed", "t0": 0.5}},
    "uiface_adaptive": {"cfg_scale": 1.0, "two_stage": {"mode": "adaptive", "th": 0.006,
                                                        "fallback_t0": 0.5,
                                                        "attention_injection": True}},
    "casd": {"solver": "heun", "spacing": "karras", "source": 0},
    "scoremix_adaptdiff_uiface": {"cfg_scale": 1.0, "negative": {"schedule": "linear", "w_max": 1.0},
                                  "two_stage": {"mode": "fixed", "t0": 0.5}},
}


def resolve(section: dict[str, Any] | SamplerConfig | None, prefix: str = "sampler.") -> SamplerConfig:
    """A :class:`SamplerConfig` from a YAML ``sampler`` section: the named recipe's settings,
    then the section's own keys on top. Unknown recipes and keys are refused by name
    (``prefix``: where the section sits in its config, e.g. ``preview.sampler.``)."""
    if isinstance(section, SamplerConfig):
        return section
    section = dict(section or {})
    name = section.get("recipe", "conditional")
    check_choice(prefix + "recipe", name, RECIPES)
    base = to_dict(SamplerConfig(), redact=False)
    for part in (RECIPES[name], section):
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
    return from_dict(SamplerConfig, base, prefix)


__all__ = ["RECIPES", "SOLVER_NAMES", "SamplerConfig", "TwoStageConfig", "resolve"]
