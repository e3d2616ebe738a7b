"""The Airflow UI Warehouse page (a FastAPI app mounted by ``plugins/ta_lab2_warehouse_plugin.py``)."""
