"""venomkit.config: the one integer check every config and flag goes through."""

import pytest

from venomkit.attacks.pgd import PGDConfig
from venomkit.attacks.taamr import TAaMRConfig
from venomkit.config import build_config, check_int
from venomkit.victims.mllm.finetune import FinetuneConfig


@pytest.mark.parametrize("value,minimum", [(1, 1), (7, 1), (0, 0), (-2, -3)])
def test_check_int_accepts_integers_at_or_above_the_minimum(value, minimum):
    check_int("field", value, minimum)


@pytest.mark.parametrize("value", [0, -1, True, False, 1.0, "3", None])
def test_check_int_rejects_with_one_line_naming_the_field(value):
    with pytest.raises(ValueError) as info:
        check_int("Cfg.steps", value, 1, hint="optimiser steps")
    message = str(info.value)
    assert "\n" not in message
    assert message == f"Cfg.steps must be an integer >= 1 (optimiser steps), got {value!r}"


def test_check_int_optional_takes_none_and_says_so():
    check_int("patience", None, 0, optional=True)
    with pytest.raises(ValueError, match=r"^patience must be an integer >= 0 or None, got -1$"):
        check_int("patience", -1, 0, optional=True)


def test_attack_and_finetune_configs_share_the_message():
    with pytest.raises(ValueError, match=r"k must be an integer >= 1, got 0"):
        PGDConfig(k=0)
    with pytest.raises(ValueError, match=r"target_class must be an integer >= 0 or None, got -1"):
        TAaMRConfig(target_class=-1)
    with pytest.raises(ValueError, match=r"FinetuneConfig.max_history must be an integer >= 0 or None, got -2"):
        FinetuneConfig(max_history=-2)
    with pytest.raises(ValueError, match=r"recipe.yaml: FinetuneConfig.lora_r must be an integer >= 1, got 0"):
        build_config(FinetuneConfig, {"lora_r": 0}, where="recipe.yaml")
