"""Settings: SLURP_* variables, unknown keys and invalid values rejected by name."""

from __future__ import annotations

import pytest

from slurp.errors import SettingsError
from slurp.settings import load_settings


def test_defaults() -> None:
    settings = load_settings({})
    assert settings.redis_url is None and settings.mongo_url is None
    assert settings.mongo_db == "slurp"
    assert settings.metrics_port == 9191
    assert settings.slurper_modules == ["examples"]


def test_values_are_read() -> None:
    settings = load_settings(
        {
            "SLURP_REDIS_URL": "redis://127.0.0.1:6390/1",
            "SLURP_MONGO_URL": "mongodb://127.0.0.1:27018",
            "SLURP_MONGO_DB": "ingest",
            "SLURP_METRICS_PORT": "9300",
            "SLURP_SLURPER_MODULES": "examples, acme.slurpers",
            "HOME": "/root",
        }
    )
    assert settings.redis_url == "redis://127.0.0.1:6390/1"
    assert settings.metrics_port == 9300
    assert settings.slurper_modules == ["examples", "acme.slurpers"]
    assert load_settings({"SLURP_SLURPER_MODULES": '["a", "b"]'}).slurper_modules == ["a", "b"]


def test_unknown_and_invalid_variables_are_named() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({"SLURP_REDIS_ULR": "x", "SLURP_METRICS_PORT": "99999", "SLURP_MONGO_DB": ""})
    message = str(info.value)
    assert "SLURP_REDIS_ULR: unknown setting; known:" in message
    assert "SLURP_REDIS_URL" in message  # the list of known names shows the fix
    assert "SLURP_METRICS_PORT: Input should be less than or equal to 65535" in message
    assert "SLURP_MONGO_DB: String should have at least 1 character" in message


def test_test_variables_are_reserved() -> None:
    assert load_settings({"SLURP_TEST_MONGO_URL": "mongodb://x"}).mongo_db == "slurp"
