"""Authoring: DAGs, tasks, dependencies and the cycle check (pure), and the DAG-file loader."""
