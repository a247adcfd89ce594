"""Issue 20's screen driver: each variant is the recipe plus what the README says, and the
pre-registered rule picks (or keeps) the default as written."""

import pytest
from omegaconf import OmegaConf

from helpers import REPO, compose_cfg, load_bench_script

RV = load_bench_script("rank_variants.py", "ovo_rank_variants", "studies")

# what each variant's overrides must change in the composed recipe (README, pre-registered)
EXPECTED = {
    "default": {},
    "teacher_full_depth": {"distill.teacher_depth": "max"},
    "student_depth_linear": {"distill.student_depth": "linear"},
    "layer_lr_inverse_usage": {"optimizer.layer_lr_scale": "inverse_usage"},
    "per_depth_norm": {"model.per_depth_norm": True},
    "sandwich": {"distill.teacher": "sandwich", "distill.num_random_students": 2},
    "max": {"distill.teacher": "max"},
    "full_depth_linear": {"distill.teacher_depth": "max", "distill.student_depth": "linear"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_variant_is_the_recipe_plus_its_documented_change(name, tmp_path):
    assert set(RV.VARIANTS) == set(EXPECTED)
    base = compose_cfg("train", [RV.RECIPE], tmp_path / "base")
    cfg = compose_cfg("train", [RV.RECIPE, *RV.VARIANTS[name]], tmp_path / name)
    for key, value in EXPECTED[name].items():
        assert OmegaConf.select(cfg, key) == value, key
    # nothing else of the recipe moves: data, schedule and model are the default's
    for key in ("data", "trainer", "scheduler", "space"):
        assert OmegaConf.to_container(cfg[key]) == OmegaConf.to_container(base[key]), key


def _score(variant, seed, panel, band_tau, overall_tau):
    return {
        "variant": variant,
        "seed": seed,
        "panel": panel,
        "band_tau": band_tau,
        "overall_tau": overall_tau,
    }


def _screen(**variants):
    """default + variants, each (panel, [band tau seed 0, seed 1], [overall seed 0, seed 1])."""
    scores = [_score("default", s, 46.0, 0.0, 0.1) for s in (0, 1)]
    for name, (panel, band, overall) in variants.items():
        scores += [_score(name, s, panel, band[s], overall[s]) for s in (0, 1)]
    return scores


def test_the_rule_picks_the_best_eligible_variant_above_the_margin():
    winner, lines = RV.apply_rule(
        _screen(max=(45.5, [0.5, 0.4], [0.1, 0.2]), sandwich=(46.0, [0.3, 0.3], [0.1, 0.1]))
    )
    assert winner == "max" and lines[-1] == "new default: max"


def test_the_rule_keeps_the_default_when_overall_tau_is_not_above_zero_in_both_seeds():
    winner, lines = RV.apply_rule(_screen(max=(46.0, [0.5, 0.5], [0.2, 0.0])))
    assert winner is None and lines[-1] == "the default stays as it is"


def test_the_rule_keeps_the_default_when_the_gain_is_within_the_margin():
    winner, _ = RV.apply_rule(_screen(max=(46.0, [0.2, 0.2], [0.2, 0.2])))
    assert winner is None  # +0.2 is not more than 0.2


def test_a_variant_losing_more_than_a_point_of_panel_is_not_eligible():
    # the best ranking, but 1.1 points of panel mean below the default's seed 0
    winner, lines = RV.apply_rule(
        _screen(sandwich=(44.9, [0.9, 0.9], [0.5, 0.5]), max=(45.0, [0.4, 0.4], [0.1, 0.1]))
    )
    assert winner == "max"
    assert any("sandwich" in line and "not eligible" in line for line in lines)


def test_only_the_two_best_seed0_screens_get_a_second_seed():
    # the third-best screen would pass on its two-seed mean, but the rule never looks at it
    winner, lines = RV.apply_rule(
        _screen(
            a=(46.0, [0.30, 0.0], [0.1, 0.1]),
            b=(46.0, [0.29, 0.0], [0.1, 0.1]),
            c=(46.0, [0.28, 0.9], [0.1, 0.1]),
        )
    )
    assert winner is None
    assert "second seed for: default, a, b" in lines


def test_the_committed_gpu_screen_keeps_the_default(capsys):
    """The README's "the default stays as it is" is what the rule says on the committed records."""
    RV.main(["--report", str(REPO / "docs/rank_cifar10/variants_gpu")])
    out = capsys.readouterr().out
    assert out.count("| gpu |") == 16
    assert out.rstrip().endswith("the default stays as it is")
    assert "second seed for: default, teacher_full_depth, student_depth_linear" in out


def test_an_unknown_variant_is_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        RV.main(["nope:0", "--runs-dir", str(tmp_path)])
    assert exit_.value.code == 2 and "nope:0" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
