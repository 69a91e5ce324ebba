"""Several backdoors in one model: each of several registered attacks' triggers planted on its
own share of the poison budget, each with its own target class (dirty-label).

The budget is split evenly between the triggers (the first ones take the remainder), on
disjoint rows drawn at random among the pairs outside each trigger's target; each row gets its
trigger's training-time image edit and a caption naming its trigger's target. A defense that
removes one backdoor may leave another, so each trigger is measured on its own: evaluation
records `asr_<trigger>` and `ra_<trigger>` against that trigger's target, and the headline ASR
and RA are their means (docs/evaluation.md, "Several triggers").

A trigger is any registered attack with a trigger of its own, built exactly as that attack
builds it, with its own parameters (`trigger_params`, label_consistent's format and presets
per trigger) and its own seed (a named substream of the attack seed, so two seeded patterns
never share draws). At test time, `apply_trigger` (what `benchbd show` pictures) gives each
image one of the triggers, drawn at random.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from benchbd.attacks.label_consistent import TRIGGER_PRESETS

from benchbd.api import (
    Attack,
    AttackSetup,
    BenchbdError,
    PairSet,
    Params,
    PluginError,
    Poisoned,
    TriggerPart,
    attacks,
    build,
    did_you_mean,
    param,
    parse_assignments,
    substream,
)


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",")]


@dataclass(frozen=True)
class MultiTriggerParams(Params):
    triggers: str = param(
        "badnet,blended", "the registered attacks whose triggers are planted, comma-separated"
    )
    targets: str = param(
        "", "a class name per trigger, comma-separated, in the order of triggers; empty (or an "
        "empty entry): the run's target",
    )  # fmt: skip
    trigger_params: str = param(
        "", "per trigger, NAME:its parameters (name=value,... or a badnet preset such as "
        "turner), groups separated by ';', e.g. 'badnet:pattern=white;blended:alpha=0.3'; a "
        "trigger not named keeps its defaults",
    )  # fmt: skip

    def __post_init__(self) -> None:
        """The lists' shapes are checked here, so a mistyped one fails when the run is
        planned; trigger names and targets need the registry and the task (the attack)."""
        super().__post_init__()
        names = self.trigger_names()
        if not all(names):
            raise BenchbdError(f"multi_trigger: triggers must name attacks, comma-separated, "
                               f"got {self.triggers!r}")  # fmt: skip
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise BenchbdError(f"multi_trigger: each trigger is named once, {repeated[0]!r} is "
                               "named twice")  # fmt: skip
        if self.targets.strip() and len(_items(self.targets)) != len(names):
            raise BenchbdError(f"multi_trigger: targets names {len(_items(self.targets))} "
                               f"classes for {len(names)} triggers; give one per trigger, or "
                               f"none for the run's target")  # fmt: skip
        self.assignments()

    def trigger_names(self) -> list[str]:
        return _items(self.triggers)

    def target_names(self) -> list[str]:
        """A class name per trigger, "" for the run's target."""
        names = self.trigger_names()
        return _items(self.targets) if self.targets.strip() else [""] * len(names)

    def assignments(self) -> dict[str, list[str]]:
        """Each trigger's parameters as name=value strings, a preset replaced by what it
        stands for; [] for a trigger trigger_params does not name."""
        names = self.trigger_names()
        found: dict[str, list[str]] = {name: [] for name in names}
        for group in filter(None, (g.strip() for g in self.trigger_params.split(";"))):
            name, colon, text = (part.strip() for part in group.partition(":"))
            if not colon or name not in found:
                hint = did_you_mean(name, names) if colon else ""
                raise BenchbdError(f"multi_trigger: trigger_params group {group!r} must be "
                                   f"NAME:PARAMS with NAME one of the triggers "
                                   f"({', '.join(names)}){hint}")  # fmt: skip
            if text and "=" not in text:
                if text not in TRIGGER_PRESETS:
                    raise BenchbdError(f"multi_trigger: {name}'s parameters must be name=value "
                                       f"pairs or a preset, got {text!r}"
                                       f"{did_you_mean(text, TRIGGER_PRESETS)}")  # fmt: skip
                text = TRIGGER_PRESETS[text]
            found[name] = [a for a in text.split(",") if a.strip()]
        return found


class MultiTrigger(Attack):
    description = "Several attacks' triggers at once, each with its own target (dirty-label)."
    Params = MultiTriggerParams

    def __init__(self, params: MultiTriggerParams, setup: AttackSetup) -> None:
        super().__init__(params, setup)
        self.inner: dict[str, Attack] = {}
        names, assignments = params.trigger_names(), params.assignments()
        shares = self.counts(len(names))
        for name, target, count in zip(names, params.target_names(), shares, strict=True):
            cls = self._trigger_class(name)
            inner_params = build(cls.Params, parse_assignments(assignments[name]),
                                 f"trigger {name!r}")  # fmt: skip
            inner_setup = replace(setup, target=self._target_index(target), count=count,
                                  seed=substream(setup.seed, f"trigger-{name}"))  # fmt: skip
            self.inner[name] = cls(inner_params, inner_setup)

    @staticmethod
    def _trigger_class(name: str) -> type[Attack]:
        try:
            cls = attacks.get(name)
        except PluginError as exc:
            raise BenchbdError(f"multi_trigger: {exc}") from None
        if issubclass(cls, MultiTrigger):
            raise BenchbdError(f"multi_trigger cannot use {name!r}, itself several triggers")
        if not cls.poisons:
            raise BenchbdError(f"multi_trigger: attack {name!r} has no trigger to add")
        return cls

    def _target_index(self, name: str) -> int:
        if not name:
            return self.setup.target
        try:
            return self.setup.task.class_index(name)
        except ValueError as exc:
            raise BenchbdError(f"multi_trigger: target {name!r}: {exc}") from None

    def counts(self, triggers: int) -> list[int]:
        """Each trigger's share of the budget: even, the first ones taking the remainder."""
        share, extra = divmod(self.setup.count, triggers)
        return [share + (k < extra) for k in range(triggers)]

    def split(self, pairs: PairSet) -> dict[str, list[int]]:
        """The rows each trigger poisons (sorted, disjoint), drawn in trigger order among the
        rows outside its target that no earlier trigger took."""
        generator = torch.Generator().manual_seed(self.setup.seed)
        free = torch.ones(len(pairs), dtype=torch.bool)
        rows: dict[str, list[int]] = {}
        for name, inner in self.inner.items():
            count = inner.setup.count
            candidates = torch.nonzero(free & (pairs.labels != inner.setup.target)).flatten()
            if count > len(candidates):
                raise BenchbdError(f"cannot poison {count} pairs with trigger {name!r}: only "
                                   f"{len(candidates)} are eligible")  # fmt: skip
            chosen = candidates[torch.randperm(len(candidates), generator=generator)[:count]]
            rows[name] = sorted(chosen.tolist())
            free[chosen] = False
        return rows

    def poison(self, pairs: PairSet) -> Poisoned:
        rows = self.split(pairs)
        generator = torch.Generator().manual_seed(substream(self.setup.seed, "poison-images"))
        images, captions = pairs.images.clone(), list(pairs.captions)
        for name, inner in self.inner.items():
            if not rows[name]:
                continue
            images[rows[name]] = inner.poison_images(pairs.images[rows[name]], generator)
            prompts = self.setup.task.prompts(inner.setup.target_name)
            picks = torch.randint(0, len(prompts), (len(rows[name]),), generator=generator)
            for row, pick in zip(rows[name], picks.tolist(), strict=True):
                captions[row] = prompts[pick]
        indices = sorted(row for part in rows.values() for row in part)
        if not indices:
            return Poisoned(pairs, [])
        return Poisoned(pairs.with_changes(images=images, captions=captions), indices)

    def apply_trigger(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Each image gets one of the triggers, drawn at random: the attack as one picture.
        Evaluation measures the triggers one by one instead (`trigger_parts`)."""
        picks = torch.randint(0, len(self.inner), (len(images),), generator=generator)
        out = images.clone()
        for k, inner in enumerate(self.inner.values()):
            mask = picks == k
            if mask.any():
                out[mask] = inner.apply_trigger(images[mask], generator)
        return out

    def trigger_parts(self) -> dict[str, TriggerPart]:
        return {name: TriggerPart(inner.apply_trigger, inner.setup.target)
                for name, inner in self.inner.items()}  # fmt: skip

    def state(self) -> dict:
        """Each trigger's target, poison count and own state (e.g. WaNet's warp field)."""
        parts = {name: {"target": inner.setup.target, "target_name": inner.setup.target_name,
                        "count": inner.setup.count, "state": inner.state()}
                 for name, inner in self.inner.items()}  # fmt: skip
        return {"parts": parts}
