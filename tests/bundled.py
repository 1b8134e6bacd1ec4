"""The bundled scenarios and labs, listed once for every test that walks them."""
from __future__ import annotations

from pathlib import Path

SCENARIO_ROOT = Path(__file__).resolve().parent.parent / "scenarios"

# A scenario folder carries scenario.yaml (its expectations); the labs live one level down
# under scenarios/labs and carry lab.yaml instead.
SCENARIOS = tuple(sorted(p for p in SCENARIO_ROOT.iterdir() if (p / "scenario.yaml").is_file()))
LABS = tuple(sorted(p for p in (SCENARIO_ROOT / "labs").iterdir() if (p / "lab.yaml").is_file()))
