# The ta_lab2 Airflow image: the official Airflow 3.3.2 image plus the RUNTIME lock only
# (requirements-runtime.txt; the dev tools of requirements.txt stay out). Dependencies are
# installed once, at build time (`docker compose build`, or `make up` which builds when needed),
# never when a container starts. The DAG code (dags/, plugins/, include/) is mounted by
# docker-compose.yaml, so editing it needs no rebuild; changing a pin does.
FROM apache/airflow:3.3.2-python3.11
COPY requirements-runtime.txt /requirements-runtime.txt
# apache-airflow==3.3.2 is pinned in the lock, so this cannot up- or downgrade Airflow itself
RUN pip install --no-cache-dir -r /requirements-runtime.txt
