"""config/reference.toml is complete (SPEC §1a): every key the config models accept — center,
storage, mqtt, metrics, rooms, every device model (with doors and inventory), every rule's
settings as its rule declares them (rules/families/, rules.catalog.CATALOG) — is in the file, with the code's default and a comment. A key
added to a model without a line here fails this test, naming the missing keys.
"""
from __future__ import annotations

import re
import tomllib
import typing

from helpers.daemon import ROOT
from pydantic import BaseModel

from gateway import config as C
from gateway.config import parse_config
from rules.catalog import CATALOG

REF = ROOT / "config" / "reference.toml"
TEXT = REF.read_text()
DATA = tomllib.loads(TEXT)


def _model_of(annotation):
    """(model, is_list) for X, X | None, list[X]; (None, False) otherwise."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    is_list = typing.get_origin(annotation) is list
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg, is_list
    return None, False


def _walk(model: type[BaseModel], table: dict, path: str, missing: list[str], wrong: list[str]) -> None:
    for name, field in model.model_fields.items():
        key = f"{path}.{name}"
        if name not in table:
            # no default value to show (None): a commented "# key = example" line is enough
            if field.default is None and re.search(rf"^\s*#\s*{name}\s*=", TEXT, re.M):
                continue
            missing.append(key)
            continue
        sub, is_list = _model_of(field.annotation)
        value = table[name]
        if sub is not None and sub is not model:
            items = value if is_list else [value]
            if not items:
                missing.append(f"{key}[] (give one example entry)")
            for item in items[:1]:
                _walk(sub, item, key, missing, wrong)
            continue
        if not field.is_required() and isinstance(field.default, (bool, int, float, str)) \
                and name not in ("name",) and value != field.default:
            wrong.append(f"{key} = {value!r}, but the code's default is {field.default!r}")


def test_every_config_key_is_in_the_reference_with_its_default():
    missing: list[str] = []
    wrong: list[str] = []
    top = {n: f for n, f in C.Config.model_fields.items() if n not in ("rooms", "devices", "rules")}
    for name, field in top.items():
        sub, _ = _model_of(field.annotation)
        if name not in DATA:
            missing.append(f"[{name}]")
            continue
        _walk(sub, DATA[name], name, missing, wrong)
    _walk(C.RoomConfig, DATA["rooms"][0], "rooms[]", missing, wrong)
    devices = {d["driver"]: d for d in DATA.get("devices", [])}
    for model in typing.get_args(typing.get_args(C.DeviceConfig)[0]):
        driver = typing.get_args(model.model_fields["driver"].annotation)[0]
        if driver not in devices:
            missing.append(f"[[devices]] driver = {driver!r}")
            continue
        _walk(model, devices[driver], f"devices[{driver}]", missing, wrong)
    blocks = []
    for code, spec in CATALOG.items():
        table = DATA.get("rules", {}).get(code)
        if table is None:
            missing.append(f"[rules.{code}]")
            blocks.append(rules_block(code))
            continue
        _walk(spec.settings, table, f"rules.{code}", missing, wrong)
    assert not missing, "config/reference.toml lacks these keys (add each with its default and a " \
                        "one-line comment):\n  " + "\n  ".join(missing) + \
                        "".join(f"\n\nfrom its rule's declaration (say what each key does):\n{b}" for b in blocks)
    assert not wrong, "config/reference.toml shows values that are not the defaults:\n  " + "\n  ".join(wrong)


def rules_block(code: str) -> str:
    """The ``[rules.<code>]`` table a rule's declaration implies (its settings model's defaults),
    for the failure message above: a new rule's table to paste, comments to write."""
    import json
    lines = [f"[rules.{code}]"]
    for name, field in CATALOG[code].settings.model_fields.items():
        value = field.get_default(call_default_factory=True)
        lines.append(f"{name} = {json.dumps(value, ensure_ascii=False)}   # <what {name} does>")
    return "\n".join(lines)


def test_the_generated_rules_block_is_the_declared_defaults():
    for code, spec in CATALOG.items():
        table = tomllib.loads(rules_block(code))["rules"][code]
        assert spec.settings.model_validate(table) == spec.settings(), code


def test_the_reference_has_no_key_the_code_rejects():
    parse_config(DATA, "reference.toml")     # raises ConfigError naming the key


def test_every_key_line_has_a_comment():
    bare = []
    for n, line in enumerate(TEXT.splitlines(), 1):
        if re.match(r"^\s*[A-Za-z_]+\s*=", line) and "#" not in line:
            bare.append(f"{n}: {line.strip()}")
    # repeated keys (a second room, each device's driver/enabled, each rule's enabled) are explained once
    bare = [b for b in bare if not re.search(r": (id|type|name|adjacent|driver|enabled) =", b)]
    assert not bare, "keys without a one-line comment:\n  " + "\n  ".join(bare)


def test_the_walker_notices_a_missing_key():
    """The check itself can fail: a model with a key the file lacks."""
    class Extra(C.StorageConfig):
        brand_new_key: int = 3
    missing: list[str] = []
    _walk(Extra, DATA["storage"], "storage", missing, [])
    assert missing == ["storage.brand_new_key"]
