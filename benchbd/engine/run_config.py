"""One experiment (a cell of the benchmark), described completely and validated once.

`benchbd run`, a TOML grid and the Python API all build a `RunConfig` and only parse their own
input into it. The defaults that depend on other settings are filled here and nowhere else:
sizes left unset on a real dataset mean every row, and pretrained weights finetuned on the
poisoned pairs get a finetuning recipe, not the from-scratch one. So one experiment written
three ways is one `RunConfig`, with one fingerprint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

import torch

from benchbd.core.checks import check_fields, check_seed
from benchbd.core.errors import BenchbdError
from benchbd.core.params import Params, build
from benchbd.core.registry import PluginError, canonical_package
from benchbd.core.suggest import did_you_mean
from benchbd.engine.data import digits
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.data.spec import compose
from benchbd.engine.evaluate import evaluations_in, parse_evaluations
from benchbd.engine.model import DEFAULT_MODEL
from benchbd.engine.plugins import attacks, defenses, stage_of
from benchbd.engine.train import TrainConfig

SPLITS = ("test", "validation")  # what a run may report on; choosing defaults uses validation
# Pretrained weights finetuned on the poisoned pairs: CleanCLIP's finetuning recipe (10 epochs,
# lr 1e-5, batch 64, 50 warmup steps), not a from-scratch one that would wipe out what the
# weights know.
FINETUNE_RECIPE = TrainConfig(epochs=10.0, batch_size=64, lr=1e-5, warmup_steps=50)
# A real source is read whole unless a size caps it; its clean and validation splits are set
# aside from it, so they keep their caps.
REAL_DATA_SIZES = DataSizes(train=0, test=0)
# The digits set is small and fixed: its test, validation and clean splits are fixed shares of
# it and every remaining scan trains (1,047 of 1,797).
DIGITS_SIZES = DataSizes(
    train=0, clean=digits.CLEAN, test=digits.TEST, validation=digits.VALIDATION
)
# Digits pretraining: 30 epochs at batch 64 (480 steps). The embedded recipe's 8 epochs at 128
# are 64 steps on digits' 1,047 training scans, too few for a backdoor to take: chosen on the
# validation split (seed 0), badnet's ASR is 0.015 after 64 steps and 0.978 after 480 (clean
# accuracy 0.933 -> 0.987), blended's 0.985 -> 1.000 (0.947 -> 0.973).
DIGITS_RECIPE = TrainConfig(epochs=30.0, batch_size=64)
KINDS = {"attack": attacks, "defense": defenses}
# The options of a run that every front end spells alike (`benchbd run --train-pairs 512`,
# `benchbd sweep --train-pairs 512`, `train_pairs = 512` in a grid's [run] table), beside
# RunConfig's own fields: the data sizes and the pretraining recipe by their command-line
# names (-> their field in DataSizes / TrainConfig), and the real dataset's other sources.
SIZE_OPTIONS = {"train_pairs": "train", "clean_pairs": "clean", "test_images": "test",
                "validation_images": "validation"}  # fmt: skip
RECIPE_OPTIONS = {"epochs": "epochs", "batch_size": "batch_size", "lr": "lr",
                  "inmodal_weight": "inmodal_weight"}  # fmt: skip
SOURCE_OPTIONS = ("eval_dataset", "clean_dataset")
# RunConfig's fields a front end sets as they are; the resources (device, threads) included.
FIELD_OPTIONS = ("target", "poison_rate", "poison_count", "dataset", "model", "pretrained",
                 "from_pretrained", "split", "eval", "device", "threads")  # fmt: skip
RUN_OPTIONS = (*FIELD_OPTIONS, *SOURCE_OPTIONS, *SIZE_OPTIONS, *RECIPE_OPTIONS)

Settings = TypeVar("Settings", DataSizes, TrainConfig)


def is_synthetic(dataset: str) -> bool:
    """Whether a --dataset string names the embedded synthetic set (generated to size)."""
    return dataset.partition(":")[0] == "synthetic"


def is_embedded(dataset: str) -> bool:
    """Whether a --dataset string names a set shipped with benchbd or its dependencies
    (synthetic, digits): one source with its own splits, never an --eval-dataset."""
    return is_synthetic(dataset) or dataset.partition(":")[0] == "digits"


def default_target(dataset: str) -> str:
    """The target class a run attacks when none is given: the embedded data's "heart" (the
    reference grid's), "zero" on digits; other sources keep "heart" and say so if they lack it."""
    return "zero" if dataset.partition(":")[0] == "digits" else "heart"


def default_sizes(dataset: str) -> DataSizes:
    if dataset.partition(":")[0] == "digits":
        return DIGITS_SIZES
    return DataSizes() if is_synthetic(dataset) else REAL_DATA_SIZES


def default_recipe(dataset: str, from_pretrained: bool) -> TrainConfig:
    """The poisoning recipe a run uses when none is given: finetuning for pretrained weights,
    else pretraining sized to the dataset (digits is small: see DIGITS_RECIPE)."""
    if from_pretrained:
        return FINETUNE_RECIPE
    return DIGITS_RECIPE if dataset.partition(":")[0] == "digits" else TrainConfig()


def plugin_params(kind: str, name: str, values: Mapping[str, Any]) -> Params:
    """The typed parameters of attack or defense `name`: the one place plugin parameters are
    checked (names, types, bounds, finiteness), whoever wrote them."""
    return build(KINDS[kind].get(name).Params, dict(values), owner=f"{kind} {name!r}")


def _settings(given: Any, default: Settings, what: str) -> Settings:
    """`given` as a complete `default`-like config: unset (None) is the default, a mapping
    sets only the fields it names (a CLI's given options, a grid's table)."""
    if given is None:
        return default
    if isinstance(given, type(default)):
        return given
    if not isinstance(given, Mapping):
        raise BenchbdError(f"the run's {what} must be a {type(default).__name__} or a table")
    known = [f.name for f in fields(default)]
    for name in given:
        if name not in known:
            raise BenchbdError(f"the run's {what} has no setting {name!r}"
                               f"{did_you_mean(str(name), known)}")  # fmt: skip
    return replace(default, **given)


def run_arguments(options: Mapping[str, Any], sizes: Mapping[str, Any] | None = None,
                  pretrain: Mapping[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """RunConfig's keyword arguments from a front end's options (RUN_OPTIONS; None: not
    given), with a grid's [sizes] and [pretrain] tables: the one place `benchbd run`,
    `benchbd sweep` and a grid file turn their options into a run, so the same option means
    the same run in each. An option that a table sets too is refused."""
    unknown = [name for name in options if name not in RUN_OPTIONS]
    if unknown:
        raise BenchbdError(f"the run has no option {unknown[0]!r}"
                           f"{did_you_mean(str(unknown[0]), RUN_OPTIONS)}")  # fmt: skip
    given = {name: value for name, value in options.items() if value is not None}
    arguments = {name: given[name] for name in FIELD_OPTIONS if name in given}
    for table, names, what in ((sizes, SIZE_OPTIONS, "sizes"),
                               (pretrain, RECIPE_OPTIONS, "pretrain")):  # fmt: skip
        settings = dict(table or {})
        for option, setting in names.items():
            if option not in given:
                continue
            if setting in settings:
                raise BenchbdError(f"{option} and [{what}] {setting} both set: give one")
            settings[setting] = given[option]
        if settings:
            arguments[what] = settings
    sources = {name: given.get(name) for name in SOURCE_OPTIONS}
    if any(sources.values()):
        dataset = given.get("dataset", RunConfig.dataset)
        if is_embedded(dataset):
            raise BenchbdError("eval_dataset and clean_dataset apply to real datasets only")
        arguments["dataset"] = compose(dataset, sources["eval_dataset"], sources["clean_dataset"])
    return arguments


def apply_resources(config: RunConfig) -> RunConfig:
    """Put the run's resources in force in this process, where the run starts: its CPU threads
    (torch keeps one count per process). The config returned names the threads the run works
    with, so what records or needs them reads them from it, never back from torch."""
    if config.threads is None:
        return replace(config, threads=torch.get_num_threads())
    if torch.get_num_threads() != config.threads:
        torch.set_num_threads(config.threads)
    return config


def recorded_name(kind: str, plugin: Mapping[str, Any]) -> str:
    """How to name a result file's plugin now: its bare name while that resolves to the
    package the file records, else `PACKAGE:NAME` (another package declares the name too)."""
    name, package = plugin["name"], plugin.get("package")
    if not package:
        return name
    try:
        here = KINDS[kind].info(name).package
    except PluginError:  # ambiguous, or not installed: the qualified name says which
        return f"{package}:{name}"
    return name if canonical_package(here) == canonical_package(package) else f"{package}:{name}"


@dataclass(frozen=True)
class RunConfig:
    """One cell of the benchmark: an attack against a defense, with everything that shapes it.

    `pretrain` and `sizes` may be left unset or given as a mapping of the settings to change;
    either way they are complete once the config is built (see the module's docstring)."""

    # The default cell (`benchbd run` with no options): defaults only, never branched on.
    attack: str = "badnet"
    defense: str = "finetune"
    attack_params: dict[str, Any] = field(default_factory=dict)
    defense_params: dict[str, Any] = field(default_factory=dict)
    dataset: str = "synthetic"
    model: str = DEFAULT_MODEL
    target: str | None = None  # None: the dataset's default target (default_target)
    poison_rate: float | None = 0.03
    poison_count: int | None = None
    seed: int = 0
    pretrain: TrainConfig | Mapping[str, Any] | None = None
    sizes: DataSizes | Mapping[str, Any] | None = None
    # Resources: where the run works, not what it is; in no fingerprint, and recorded in the
    # result file's `runtime`. `threads`: CPU threads (None: the process's count, torch's one
    # per core or $OMP_NUM_THREADS), put in force where the run starts (apply_resources);
    # float sums depend on how work is split, so an exact rerun needs the same count.
    device: str = "auto"
    threads: int | None = None
    # Pretrained weights (open_clip tag or checkpoint path). Alone: the model is taken as it is
    # and not trained on the poisoned pairs; with from_pretrained: it is finetuned on them.
    pretrained: str | None = None
    from_pretrained: bool = False
    # The labelled split the metrics are measured on: "test" reports, "validation" tunes.
    split: str = "test"
    # Opt-in measurements beside zero-shot CA / ASR ("probe", "retrieval": evaluate.EVALUATIONS;
    # a comma string or a list). Measurements of the same experiment: not in its fingerprints.
    eval: tuple[str, ...] | list[str] | str = ()

    def __post_init__(self) -> None:
        check_fields(self, owner="the run")
        check_seed(self.seed)
        if self.threads is not None and self.threads < 1:
            raise BenchbdError(f"threads must be at least 1, got {self.threads}")
        if self.split not in SPLITS:
            raise BenchbdError(f"unknown split {self.split!r}: choose {' or '.join(SPLITS)}")
        object.__setattr__(self, "eval", parse_evaluations(self.eval))
        for name, params in (("attack", self.attack_params), ("defense", self.defense_params)):
            if not isinstance(params, dict):
                raise BenchbdError(f"{name} parameters must be a table of name = value")
        if self.from_pretrained and not self.pretrained:
            raise BenchbdError("--from-pretrained needs --pretrained TAG or a checkpoint path")
        if self.poison_count is not None and self.poison_count < 0:
            raise BenchbdError(f"poison count must be >= 0, got {self.poison_count}")
        if self.poison_count is None and (
            self.poison_rate is None or not 0 <= self.poison_rate <= 1
        ):
            raise BenchbdError(f"poison rate must be in [0, 1], got {self.poison_rate}")
        if self.target is None:
            object.__setattr__(self, "target", default_target(self.dataset))
        sizes = _settings(self.sizes, default_sizes(self.dataset), "sizes")
        recipe = default_recipe(self.dataset, self.from_pretrained)
        pretrain = _settings(self.pretrain, recipe, "pretrain recipe")
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "pretrain", pretrain)
        self.attack_settings()  # every name and parameter checked now, before any work
        self.defense_settings()
        stage = stage_of(defenses.get(self.defense))
        if stage not in ("finetune", "input") and not self.trains_poisoned_model:
            raise BenchbdError(f"defense {self.defense!r} acts at the {stage} stage, so it needs "
                               "pretraining on the poisoned pairs: add --from-pretrained, or "
                               "leave --pretrained out")  # fmt: skip

    def attack_settings(self) -> Params:
        """The attack's typed parameters."""
        return plugin_params("attack", self.attack, self.attack_params)

    def defense_settings(self) -> Params:
        """The defense's typed parameters."""
        return plugin_params("defense", self.defense, self.defense_params)

    def defense_settings_for(self, clean_pairs: int) -> Params:
        """The defense's parameters for a defender holding `clean_pairs` clean pairs: what the
        user left unset may scale with that size (`Params.scaled_to`), so a small real set
        gets a recipe of sensible length. What runs, is recorded and is fingerprinted."""
        return self.defense_settings().scaled_to(clean_pairs, frozenset(self.defense_params))

    @property
    def trains_poisoned_model(self) -> bool:
        """False when pretrained weights are used as they are: nothing is trained on the
        poisoned pairs, so no poisoned model is cached."""
        return self.pretrained is None or self.from_pretrained

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> RunConfig:
        """The experiment a result file records, rebuilt: the same fingerprints, so the file
        can be rerun or checked against the engine. The poison budget is taken as the count
        the run used, which is what the fingerprint holds."""
        pretrained = (result.get("extra") or {}).get("pretrained") or {}
        dataset = result["dataset"]
        return cls(
            attack=recorded_name("attack", result["attack"]),
            defense=recorded_name("defense", result["defense"]),
            attack_params=dict(result["attack"]["params"]),
            defense_params=dict(result["defense"]["params"]),
            dataset=dataset["name"],
            model=result["model"],
            target=result["target"]["name"],
            poison_count=result["poison"]["count"],
            seed=result["seed"],
            pretrain=dict(result["pretrain"]),
            sizes=dict(dataset["sizes"]),
            pretrained=pretrained.get("weights"),
            from_pretrained=bool(pretrained.get("finetuned", False)),
            split=dataset.get("split", "test"),
            eval=evaluations_in(result["metrics"]),
        )

    def poison_budget(self, n_pairs: int) -> int:
        if self.poison_count is not None:
            return self.poison_count
        return round(self.poison_rate * n_pairs)
