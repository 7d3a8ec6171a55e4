"""Settings: flags win over environment, environment over defaults."""

from __future__ import annotations

import pytest

from service.config import load_config
from service.errors import ConfigError


def test_precedence() -> None:
    env = {"MODEL_NAME": "from-env", "GRPC_PORT": "6000", "POLL_SECONDS": "2.5", "MLFLOW_TRACKING_URI": "http://m:5000"}
    config = load_config(["--port", "7000"], env)
    assert (config.model_name, config.port, config.poll_seconds) == ("from-env", 7000, 2.5)
    assert config.tracking_uri == "http://m:5000"
    defaults = load_config([], {})
    assert (defaults.port, defaults.alias, defaults.poll_seconds, defaults.tracking_uri) == (
        50051,
        "champion",
        10.0,
        "sqlite:///mlflow.db",
    )


def test_bad_values_name_the_setting() -> None:
    with pytest.raises(ConfigError, match="MAX_BATCH: expected int, got 'lots'"):
        load_config([], {"MAX_BATCH": "lots"})
    with pytest.raises(ConfigError, match=r"^--port: expected 0\.\.65535, got 70000$"):
        load_config(["--port", "70000"], {})
    with pytest.raises(ConfigError, match=r"^GRPC_PORT: expected 0\.\.65535, got 70000$"):  # names where it came from
        load_config([], {"GRPC_PORT": "70000"})


def test_shadow_settings_are_checked() -> None:
    config = load_config(["--shadow-alias", "challenger", "--shadow-share", "0.25"], {"SHADOW_QUEUE_IMAGES": "64"})
    assert (config.shadow_alias, config.shadow_share, config.shadow_queue_images) == ("challenger", 0.25, 64)
    assert load_config([], {}).shadow_alias == ""  # off by default
    with pytest.raises(ConfigError, match=r"^--shadow-share: expected a share from 0 to 1, got 1\.5$"):
        load_config(["--shadow-share", "1.5"], {})
    with pytest.raises(ConfigError, match=r"^SHADOW_ALIAS: expected an alias other than the served one, champion$"):
        load_config([], {"SHADOW_ALIAS": "champion"})
    with pytest.raises(ConfigError, match=r"^--shadow-queue-images: expected a positive number, got 0$"):
        load_config(["--shadow-queue-images", "0"], {})
