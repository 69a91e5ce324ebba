"""Recipes that scale with the data: a defense's epochs left unset keep its step count on a
small clean set, are recorded as run, and leave the embedded default's recipes untouched."""

from __future__ import annotations

from benchbd.defenses.cleanclip import CleanCLIPParams
from benchbd.defenses.supervised import SupervisedParams

from benchbd.engine.planning import plan
from benchbd.engine.run_config import FINETUNE_RECIPE, RunConfig
from benchbd.engine.train import TrainConfig


def test_epochs_left_unset_are_raised_to_the_reference_step_count():
    params = CleanCLIPParams()  # 5 epochs of 5,000 pairs at 128: 39 steps an epoch, 195 steps
    scaled = params.scaled_to(300, given=frozenset())
    assert scaled.epochs == 97.5  # 300 pairs: 2 full batches an epoch, 195 steps
    assert scaled.train_config().steps(300) == 195
    assert params.scaled_to(1000, given=frozenset()).train_config().steps(1000) == 195  # 7 an epoch
    assert scaled.lr == params.lr and scaled.batch_size == params.batch_size


def test_what_the_user_set_or_a_large_set_is_left_as_it_is():
    params = CleanCLIPParams()
    assert params.scaled_to(300, given=frozenset({"epochs"})) == params
    assert params.scaled_to(5000, given=frozenset()) == params
    assert params.scaled_to(20000, given=frozenset()) == params  # never lowered
    capped = CleanCLIPParams(clean_pairs=500)  # the defender uses 500 of 5,000
    assert capped.scaled_to(5000, given=frozenset({"clean_pairs"})).epochs == 195 / 3
    assert CleanCLIPParams(batch_size=64).scaled_to(300, frozenset({"batch_size"})).epochs == 97.5


def test_the_supervised_head_scales_on_its_labelled_images():
    scaled = SupervisedParams().scaled_to(300, given=frozenset())
    assert scaled.epochs == 195.0  # 10 epochs of 5,000 at 128 are 390 steps: 2 an epoch here


def test_a_run_records_and_fingerprints_the_scaled_recipe():
    default = RunConfig(dataset="digits", defense="cleanclip")
    written = RunConfig(dataset="digits", defense="cleanclip", defense_params={"epochs": 97.5})
    assert plan(default) == plan(written)  # the result file's params rebuild its fingerprint
    assert plan(default) != plan(RunConfig(dataset="digits", defense="cleanclip",
                                           defense_params={"epochs": 5}))  # fmt: skip


def test_the_embedded_default_keeps_its_recipe():
    config = RunConfig(defense="cleanclip")
    assert config.defense_settings_for(5000) == config.defense_settings()


def test_digits_pretrains_long_enough_for_a_backdoor_to_take():
    recipe = RunConfig(dataset="digits").pretrain
    assert (recipe.epochs, recipe.batch_size) == (30, 64)
    assert recipe.steps(1047) == 480  # against 64 steps under the embedded recipe
    assert RunConfig(dataset="digits", pretrain={"epochs": 2}).pretrain.batch_size == 64
    assert RunConfig().pretrain == TrainConfig()  # the embedded default is unchanged
    finetuned = RunConfig(dataset="digits", pretrained="weights.pt", from_pretrained=True)
    assert finetuned.pretrain == FINETUNE_RECIPE
