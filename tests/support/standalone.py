"""A real ``airflow standalone`` for tests, driven only through the REST API.

The launcher is package code now (``ta_lab2.local_airflow``, also behind ``make airflow`` and
``make bench``); this module re-exports it under the names tests have always imported, e.g.
``from tests.support.standalone import StandaloneAirflow, sqlalchemy_url``.
"""

from __future__ import annotations

from ta_lab2.local_airflow import (
    DEFAULT_DAG_ID,
    FINISHED_RUN_STATES,
    FINISHED_TI_STATES,
    PASSWORD_FILE,
    PROJECT_ROOT,
    STATE_FILE,
    AirflowApiError,
    StandaloneAirflow,
    _kill,
    _session_pids,
    free_port,
    home_pids,
    iso,
    read_task_log,
    sqlalchemy_url,
)

__all__ = ["DEFAULT_DAG_ID", "FINISHED_RUN_STATES", "FINISHED_TI_STATES", "PASSWORD_FILE", "PROJECT_ROOT",
           "STATE_FILE", "AirflowApiError", "StandaloneAirflow", "_kill", "_session_pids", "free_port",
           "home_pids", "iso", "read_task_log", "sqlalchemy_url"]
