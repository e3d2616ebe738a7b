"""The Airflow UI plugin file: a valid external view + FastAPI app, and light to import (every
Airflow process that loads plugins imports it, task processes included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "plugins" / "ta_lab2_warehouse_plugin.py"


def test_the_plugin_declares_the_app_and_the_nav_view_and_imports_nothing_heavy() -> None:
    probe = f"""
import importlib.util, json, sys
import airflow.plugins_manager  # loaded in every process that loads plugins
before = set(sys.modules)
spec = importlib.util.spec_from_file_location("ta_lab2_warehouse_plugin", {str(PLUGIN)!r})
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
p = mod.TaLab2WarehousePlugin
new = set(sys.modules) - before
print(json.dumps({{"heavy": sorted(m for m in new if m.split(".")[0] in ("ta_lab2", "matplotlib", "pandas", "psycopg")
                                   or m.startswith("airflow.api_fastapi")),
                   "apps": [{{k: v for k, v in a.items() if k != "app"}} for a in p.fastapi_apps],
                   "views": p.external_views, "name": p.name}}))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")})  # conftest's AIRFLOW_HOME
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["heavy"] == []
    assert doc["apps"] == [{"url_prefix": "/ta_lab2/warehouse", "name": "ta_lab2 warehouse"}]
    assert doc["views"] == [{"name": "Warehouse", "href": "ta_lab2/warehouse/", "url_route": "warehouse",
                             "destination": "nav", "category": "browse"}]
    from ta_lab2.ui.app import URL_PREFIX

    assert doc["apps"][0]["url_prefix"] == URL_PREFIX
