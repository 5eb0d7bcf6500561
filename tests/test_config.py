from pathlib import Path

import pandas as pd
import pytest

from hudd.config import Config, effective_config, load_config
from hudd.core.errors import HuddError
from tests.conftest import one_line_error, run_cli


def test_defaults_then_toml_then_flags(tmp_path: Path):
    assert load_config(tmp_path).batch_size == Config().batch_size == 64
    (tmp_path / "hudd.toml").write_text('batch_size = 16\nseed = 7\nlayers = ["features.0", "features.3"]\n')
    config = load_config(tmp_path)
    assert (config.batch_size, config.seed, config.layers) == (16, 7, ("features.0", "features.3"))
    config = load_config(tmp_path, {"batch_size": 8, "seed": None})
    assert config.batch_size == 8, "a flag beats hudd.toml"
    assert config.seed == 7, "a flag that was not given (None) leaves hudd.toml's value"
    sources = {key: source for key, _, source in effective_config(tmp_path, {"batch_size": 8})}
    assert sources["batch_size"] == "command line"
    assert sources["seed"] == str(tmp_path / "hudd.toml")
    assert sources["sf"] == "default"


@pytest.mark.parametrize("text, expected", [
    ("sf = 1.5\n", "sf == 1.5, must be <= 1"),
    ('batch_size = "big"\n', "batch_size == 'big', must be an integer"),
    ("lrp_rule = \"magic\"\n", "must be one of hudd, epsilon-plus-flat"),
    ("bogus = 1\n", "unknown key(s) bogus"),
    ("k_min = 10\nk_max = 5\n", "k_max == 5, must be >= k_min == 10"),
    ("sf = \n", "not valid TOML"),
], ids=["range", "type", "choice", "unknown-key", "k-range", "syntax"])
def test_bad_toml_names_file_and_key(tmp_path: Path, text: str, expected: str):
    (tmp_path / "hudd.toml").write_text(text)
    with pytest.raises(HuddError) as info:
        load_config(tmp_path)
    assert expected in str(info.value)
    assert "hudd.toml" in str(info.value)


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        Config().seed = 3


def test_config_command_prints_effective_values_and_sources(tmp_path: Path):
    (tmp_path / "hudd.toml").write_text("sf = 0.5\n")
    result = run_cli("config", str(tmp_path), "--seed", "3")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"sf = 0.5  # {tmp_path / 'hudd.toml'}" in lines
    assert "seed = 3  # command line" in lines
    assert "batch_size = 64  # default" in lines


def test_bad_flag_value_is_one_line_exit_2(tmp_path: Path):
    result = run_cli("config", str(tmp_path), "--batch-size", "0")
    assert result.exit_code == 2
    assert result.stderr.strip() == "hudd: error: --batch-size == 0, must be >= 1"


def test_every_setting_is_a_flag_of_the_same_name_and_errors_name_what_the_user_wrote(tmp_path: Path):
    from hudd.config import CONFIG_KEYS

    shown = run_cli("config", str(tmp_path), "--help").output
    for key in CONFIG_KEYS:
        assert f"--{key.replace('_', '-')}" in shown, key
    one_line_error(run_cli("retrain", str(tmp_path), "--retrain-epochs", "0"), "--retrain-epochs == 0, must be >= 1")
    one_line_error(run_cli("doctor", str(tmp_path), "--doctor-per-class", "0"), "--doctor-per-class == 0")
    (tmp_path / "hudd.toml").write_text('clusterer = "kmeans"\n')
    one_line_error(run_cli("analyze", str(tmp_path)), f"{tmp_path / 'hudd.toml'}: clusterer == 'kmeans'", "dbscan, hdbscan, ward")


def test_feature_options_set_in_hudd_toml_reach_the_feature_method(case: Path):
    with open(case / "hudd.toml", "a") as toml:
        toml.write('clusterer = "ward"\nreducer = "pca"\n')
    assert run_cli("test", str(case)).exit_code == 0
    assert run_cli("cluster", str(case), "--method", "blackbox").exit_code == 0
    summary = pd.read_csv(case / "HUDD/ClusterAnalysis/blackbox/method.csv").iloc[0]
    assert summary["clusterer"] == "ward", "blackbox's own clusterer is dbscan: the toml key chose ward"
