"""The one module a benchbd plugin imports from.

An attack, a defense of any stage (finetune, screen, pretrain, input) or a model detector,
built in (`benchbd.attacks`, `benchbd.defenses`) or in a package of its own, takes
everything it needs from here: the contracts and the types they name, the data it is
handed, how it declares parameters and reports errors, seeds, the training loop and
losses a defense trains with, the evaluation helpers, the model bundle, a cache for an
artefact it computed, and the plugin registries a plugin built from other plugins looks
its parts up in.

The engine's modules may be rearranged between releases; these names stay, so a plugin that
reaches past this module is on its own. docs/plugins.md describes each.
"""

from __future__ import annotations

from benchbd.core.errors import BenchbdError
from benchbd.core.params import Params, build, param, parse_assignments, scale_epochs
from benchbd.core.registry import PluginError
from benchbd.core.seeds import substream
from benchbd.core.suggest import did_you_mean
from benchbd.engine.augment import TextViews, table_synonyms, wordnet_synonyms
from benchbd.engine.data.images import StreamedPairSet
from benchbd.engine.data.pairs import UNLABELLED, PairSet, ZeroShotTask
from benchbd.engine.distributed import World, gathered_with_grad, world
from benchbd.engine.evaluate import clean_accuracy, predict, zero_shot_weights
from benchbd.engine.model import ClipBundle
from benchbd.engine.model_detection import (
    DetectionContext,
    ModelDetector,
    ModelVerdict,
    model_detectors,
)
from benchbd.engine.objectives import ClipInModalObjective, clip_inmodal_loss, inmodal_loss
from benchbd.engine.plugin_cache import artefact_path, load_artefact, save_artefact
from benchbd.engine.plugins import (
    Attack,
    AttackSetup,
    Defense,
    DefenseContext,
    InputDetector,
    NoParams,
    Poisoned,
    PretrainingDefense,
    PretrainingHooks,
    Screening,
    ScreeningDefense,
    TrainingPairs,
    TriggerPart,
    attacks,
    defenses,
)
from benchbd.engine.probe import encode_images, probe_features
from benchbd.engine.step_report import StepReport
from benchbd.engine.train import Batch, TrainConfig, clip_loss, contrastive_objective, train

__all__ = [
    # the contracts, and the types they name
    "Attack",
    "AttackSetup",
    "Poisoned",
    "TriggerPart",
    "Defense",
    "DefenseContext",
    "ScreeningDefense",
    "TrainingPairs",
    "Screening",
    "PretrainingDefense",
    "PretrainingHooks",
    "InputDetector",
    # the model-detector contract: a trained model in, a score (and a suspected target) out
    "ModelDetector",
    "DetectionContext",
    "ModelVerdict",
    # the data a plugin is handed
    "PairSet",
    "StreamedPairSet",
    "ZeroShotTask",
    "UNLABELLED",
    # parameters
    "Params",
    "NoParams",
    "param",
    "build",
    "parse_assignments",
    "scale_epochs",
    # errors and suggestions
    "BenchbdError",
    "PluginError",
    "did_you_mean",
    # seeds
    "substream",
    # the model
    "ClipBundle",
    # training: the one loop, its recipe and batch, and the losses
    "train",
    "TrainConfig",
    "Batch",
    "StepReport",
    "contrastive_objective",
    "clip_loss",
    "inmodal_loss",
    "clip_inmodal_loss",
    "ClipInModalObjective",
    # augmentation
    "TextViews",
    "table_synonyms",
    "wordnet_synonyms",
    # evaluation
    "zero_shot_weights",
    "predict",
    "clean_accuracy",
    "probe_features",
    "encode_images",
    # distributed runs (torchrun)
    "World",
    "world",
    "gathered_with_grad",
    # a cached artefact of a plugin's own
    "artefact_path",
    "save_artefact",
    "load_artefact",
    # the registries, for a plugin built from other plugins
    "attacks",
    "defenses",
    "model_detectors",
]
