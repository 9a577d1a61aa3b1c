"""Compatibility with other orchestrators' DAG files: `dagd.compat.airflow` serves the
`airflow` names that Airflow 2 and 3 DAG files import, and `dagd.compat.hook` is the
import hook that serves them while dagd imports a DAG file."""
