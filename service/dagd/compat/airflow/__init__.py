"""Airflow's authoring names, mapped onto dagd's authoring API, for Airflow 2 and 3 DAG
files that run unchanged. DAG files reach these modules as `airflow...` through the
import hook (`dagd.compat.hook`); `names` is the map of what is served from where.
"""
