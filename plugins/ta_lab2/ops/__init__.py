"""Operations support: Telegram alerts and Airflow failure callbacks (see ``ops.alerts``)."""
