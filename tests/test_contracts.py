"""Contract values that two programs must agree on without importing each other."""

from __future__ import annotations

from dataclasses import fields

from service.config import ServiceConfig
from trainer.config import DEFAULT_ALIAS, DEFAULT_MODEL_NAME, parse_config


def test_the_trainer_registers_what_the_service_serves_by_default() -> None:
    service = {f.name: f.default for f in fields(ServiceConfig)}
    assert (service["model_name"], service["alias"]) == (DEFAULT_MODEL_NAME, DEFAULT_ALIAS)
    trainer = parse_config([], {})
    assert (trainer.model_name, trainer.alias) == (service["model_name"], service["alias"])
