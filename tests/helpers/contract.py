"""Validate MQTT messages against docs/asyncapi.yaml (the generated contract) with jsonschema."""
from __future__ import annotations

import functools
from pathlib import Path

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from gateway.contract import schema_name_for

DOC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
URI = "urn:casegate:asyncapi"


@functools.lru_cache(maxsize=1)
def _registry() -> Registry:
    doc = yaml.safe_load(DOC.read_text())
    return Registry().with_resource(URI, Resource(contents=doc, specification=DRAFT7))


@functools.lru_cache(maxsize=None)
def _validator(name: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator({"$ref": f"{URI}#/components/schemas/{name}"}, registry=_registry(),
                                      format_checker=jsonschema.FormatChecker())


def problems(topic: str, payload) -> list[str]:
    """Why a message does not match the contract ([] = it does)."""
    name = schema_name_for(topic, payload)
    if name is None:
        return [f"{topic}: no channel of the contract"]
    errs = sorted(_validator(name).iter_errors(payload), key=lambda e: list(e.path))
    return [f"{topic} ({name}): {'/'.join(map(str, e.path))}: {e.message}" for e in errs[:3]]
