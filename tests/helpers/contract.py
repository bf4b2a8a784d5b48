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


def journal_problems(journal: Path) -> tuple[int, set[str], list[str]]:
    """Every event of a journal, as published: (rows, event types, problems). Each event must
    have its own schema in the contract (not merely some channel) and match it."""
    import json
    import sqlite3

    from gateway.journal import EVENT_COLUMNS      # prev is stored only where the row before can't supply it
    conn = sqlite3.connect(journal)
    try:
        rows = conn.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE data IS NOT NULL ORDER BY seq").fetchall()
    finally:
        conn.close()
    bad: list[str] = []
    types: set[str] = set()
    for seq, id_, ts, center, type_, source, data, prev, h in rows:
        env = {"id": id_, "seq": seq, "ts": ts, "center": center, "type": type_, "source": source,
               "data": json.loads(data), "prev": prev, "hash": h}
        types.add(type_)
        topic = (f"casegate/{center}/alarms/{env['data'].get('code')}" if type_.startswith("alarm.")
                 else f"casegate/{center}/events/{type_.replace('.', '/')}")
        assert schema_name_for(topic, env) == f"Event.{type_}", f"{type_} has no schema in the contract"
        bad += problems(topic, env)
    return len(rows), types, bad
