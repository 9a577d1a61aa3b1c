"""Executors: run one attempt of a task and report its result. Local only for now."""
