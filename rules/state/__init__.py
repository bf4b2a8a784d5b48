"""The center model (State) and its folds, by domain; see rules/state/center.py.

Importing the package imports every module in it, so each module's ``@folds``
registrations are in FOLDS before the first event is folded (no hand list)."""
from __future__ import annotations

import importlib
import pkgutil

from rules.state.cameras import CameraView
from rules.state.center import State
from rules.state.custody import AUTHORISING_ACTIONS, Belongings, Compartment, CustodyOrder, Removal, UnlockRequest
from rules.state.persons import MINOR_BELOW_AGE, UPDATABLE, VULNERABLE_BELOW_AGE, Person, count_keys
from rules.state.presence import ROOM_LOG_MAX, Presence
from rules.state.registry import FOLDS, folds
from rules.state.rooms import Door, Recording

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["AUTHORISING_ACTIONS", "Belongings", "CameraView", "Compartment", "CustodyOrder", "Door", "FOLDS",
           "MINOR_BELOW_AGE", "Person", "Presence", "ROOM_LOG_MAX", "Recording", "Removal", "State", "UPDATABLE",
           "UnlockRequest", "VULNERABLE_BELOW_AGE", "count_keys", "folds"]
