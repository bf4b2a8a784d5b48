"""Imports every rule family so that its rules register (rules.base.RULES)."""
from rules import (camera, custody_time, devices, facility, interrogation,  # noqa: F401
                   presence, wristband)
from rules import evidence, protections  # noqa: F401  (issue 14)
from rules import clock  # noqa: F401  (issue 22)
from rules import identification  # noqa: F401  (issue 23)
