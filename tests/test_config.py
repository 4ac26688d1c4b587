"""venomkit.config: the one integer check and the one number check every config and flag goes through."""

import pytest

from venomkit.attacks.pgd import PGDConfig
from venomkit.runs.poisoning import PoisoningRunConfig
from venomkit.attacks.taamr import TAaMRConfig
from venomkit.config import build_config, check_int, check_number
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


@pytest.mark.parametrize(
    "value,bounds,options",
    [(0.5, (0, 1), {}), (1, (0, 1), {}), (0, (0, 1), {}), (1e-9, (0, None), {"low_open": True}), (-3.5, (None, None), {})],
)
def test_check_number_accepts_finite_numbers_in_the_interval_as_floats(value, bounds, options):
    out = check_number("field", value, *bounds, **options)
    assert out == value and type(out) is float


@pytest.mark.parametrize(
    "value,bounds,options,expected",
    [
        (0, (0, 1), {"low_open": True}, "mr must be a number in (0, 1], got 0"),
        (1.0, (0, 1), {"high_open": True}, "mr must be a number in [0, 1), got 1.0"),
        (-1, (0, None), {}, "mr must be a number >= 0, got -1"),
        (0.0, (0, None), {"low_open": True}, "mr must be a number > 0, got 0.0"),
        (2, (None, 1), {}, "mr must be a number <= 1, got 2"),
        (float("nan"), (None, None), {}, "mr must be a finite number, got nan"),
        (float("inf"), (0, None), {}, "mr must be a number >= 0, got inf"),
        (True, (0, 1), {}, "mr must be a number in [0, 1], got True"),
        ("0.5", (0, 1), {}, "mr must be a number in [0, 1], got '0.5'"),
        (None, (0, 1), {}, "mr must be a number in [0, 1], got None"),
        (-1, (0, None), {"optional": True, "hint": "nats"}, "mr must be a number >= 0 or None (nats), got -1"),
    ],
)
def test_check_number_rejects_with_one_line_naming_the_field(value, bounds, options, expected):
    with pytest.raises(ValueError) as info:
        check_number("mr", value, *bounds, **options)
    assert str(info.value) == expected


def test_check_number_optional_passes_none_through():
    assert check_number("step_size", None, 0, low_open=True, optional=True) is None


def test_configs_share_the_number_message():
    with pytest.raises(ValueError, match=r"^mr must be a number in \(0, 1\], got 1.5$"):
        PoisoningRunConfig(mr=1.5)
    with pytest.raises(ValueError, match=r"^FinetuneConfig.text_drop must be a number in \[0, 1\), got 1.0$"):
        FinetuneConfig(text_drop=1.0)
    with pytest.raises(ValueError, match=r"^temperature must be a number > 0, got 0$"):
        PGDConfig(temperature=0)


def test_check_int_maximum_names_the_interval():
    check_int("SDTraining.low_noise_max", 1000, 1, "a DDPM timestep", maximum=1000)
    with pytest.raises(ValueError, match=r"^SDTraining.low_noise_max must be an integer in \[1, 1000\] \(a DDPM timestep\), got 1001$"):
        check_int("SDTraining.low_noise_max", 1001, 1, "a DDPM timestep", maximum=1000)


def test_every_pixel_attack_checks_its_budget_the_same_way():
    """One budget check (attacks.base.check_budget): the L-inf budgets of PGD, FGSM, VenomRec,
    its pixel baselines and AUV-Fusion's cap refuse the same values with the same line."""
    from venomkit.attacks.auv_fusion import AUVFusionConfig
    from venomkit.attacks.base import check_budget
    from venomkit.attacks.fgsm import FGSMConfig
    from venomkit.attacks.venomrec.attack import VenomRecConfig
    from venomkit.attacks.venomrec.baselines import ContentBudgetConfig, ShadowCastConfig

    assert check_budget(8 / 255) == pytest.approx(8 / 255) and check_budget(3.0, "l2") == 3.0
    line = r"^eps must be a number in \(0, 1\] \(an L-inf budget on \[0, 1\] images\), got 1.5$"
    for config in (PGDConfig, FGSMConfig, VenomRecConfig, ContentBudgetConfig, ShadowCastConfig, AUVFusionConfig):
        with pytest.raises(ValueError, match=line):
            config(eps=1.5)
    with pytest.raises(ValueError, match=r"^eps_start must be a number in \(0, 1\]"):
        VenomRecConfig(eps_start=0)
    with pytest.raises(ValueError, match=r"^need eps_start <= eps"):
        VenomRecConfig(eps=8 / 255, eps_start=16 / 255)
    with pytest.raises(ValueError, match=r"^norm must be 'linf' or 'l2', got 'l1'$"):
        PGDConfig(norm="l1")


def test_numpy_integers_pass_only_where_a_function_takes_them():
    """Config fields stay plain ints (JSON-clean); function arguments computed with numpy pass."""
    import numpy as np

    from venomkit.data import toyshop
    from venomkit.defenses.gradient_mismatch import top_k_users

    with pytest.raises(ValueError, match=r"^steps must be an integer >= 1, got "):
        check_int("steps", np.int64(3), 1)
    check_int("k", np.int64(3), 1, numpy_ok=True)
    assert tuple(toyshop.render_item("chair", "red", "plain", "wood", np.int64(32)).shape) == (3, 32, 32)
    import torch

    assert top_k_users(torch.tensor([0.5, -1.0, 2.0]), np.int64(1)) == {2}
    with pytest.raises(ValueError, match=r"^k must be an integer >= 1, got 0$"):
        top_k_users(torch.tensor([1.0]), 0)


@pytest.mark.parametrize("ks", [[], [0, 5], [5, True], (5, "10"), 5])
def test_ks_lists_share_one_check(ks):
    from venomkit.runs.recipe import MetricsSpec

    for make in (lambda: MetricsSpec(ks=ks), lambda: PoisoningRunConfig(ks=ks)):
        with pytest.raises(ValueError, match=r"^ks must be a non-empty list of integers >= 1, got "):
            make()
