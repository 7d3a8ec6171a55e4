"""The trainer's configuration: flags over environment over defaults, resolved in one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.config import DEFAULT_ALIAS, DEFAULT_EXPERIMENT, DEFAULT_MODEL_NAME, build_parser, parse_config
from trainer.recipes import DEFAULT_RECIPE


def test_defaults_without_flags_or_environment() -> None:
    config = parse_config([], {})
    assert config.recipe.name == DEFAULT_RECIPE and config.seed == 0
    assert (config.data_dir, config.download) == (Path("data"), True)
    assert (config.model_name, config.alias, config.experiment) == (
        DEFAULT_MODEL_NAME,
        DEFAULT_ALIAS,
        DEFAULT_EXPERIMENT,
    )
    assert config.register and not config.force_promote and config.limit is None


def test_environment_over_defaults_and_flags_over_environment() -> None:
    environ = {"MNIST_DATA_DIR": "/from/env", "MLFLOW_EXPERIMENT_NAME": "env-experiment"}
    from_env = parse_config([], environ)
    assert (from_env.data_dir, from_env.download, from_env.experiment) == (Path("/from/env"), False, "env-experiment")
    from_flags = parse_config(["--data-dir", "/from/flag", "--experiment", "flag-experiment"], environ)
    assert (from_flags.data_dir, from_flags.download, from_flags.experiment) == (
        Path("/from/flag"),
        False,
        "flag-experiment",
    )


def test_the_process_environment_is_read_when_none_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_DATA_DIR", "/from/process")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "process-experiment")
    config = parse_config([])
    assert (config.data_dir, config.experiment) == (Path("/from/process"), "process-experiment")


def test_flags_override_the_recipe() -> None:
    config = parse_config(["--recipe", "mlp", "--epochs", "3", "--lr", "0.5", "--batch-size", "64"], {})
    assert (config.recipe.name, config.recipe.epochs, config.recipe.lr, config.recipe.batch_size) == ("mlp", 3, 0.5, 64)


def test_every_flag_says_what_it_does_and_its_default() -> None:
    for action in build_parser()._actions:
        if action.dest == "help":
            continue
        assert action.help and "(default: " in action.help, action.option_strings
        assert len(action.help.split("(default: ")[0].strip()) > 5, action.option_strings  # more than a default


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--epochs", "0"], "expected a positive int, got 0"),
        (["--lr", "-0.1"], "expected a positive float, got -0.1"),
        (["--batch-size", "many"], "expected a positive int, got 'many'"),
    ],
)
def test_bad_numbers_are_refused_naming_the_value(
    flags: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_config(flags, {})
    assert exit_.value.code == 2
    assert needle in capsys.readouterr().err
