"""The module map: each `airflow` module a DAG file may import, the names it offers and
where in `dagd.compat.airflow` each one lives; and, for the names outside the subset,
what dagd offers instead. Pure data and two look-ups; nothing is imported here.

A value "bash:BashOperator" is the attribute `BashOperator` of the module
`dagd.compat.airflow.operators`.
"""

from __future__ import annotations

_PYTHON = {
    "PythonOperator": "operators:PythonOperator",
    "BranchPythonOperator": "operators:BranchPythonOperator",
    "ShortCircuitOperator": "operators:ShortCircuitOperator",
    "get_current_context": "context:get_current_context",
    "is_venv_installed": "operators:is_venv_installed",
}
_BASEOPERATOR = {
    "BaseOperator": "operators:BaseOperator",
    "chain": "links:chain",
    "cross_downstream": "links:cross_downstream",
    "chain_linear": "links:chain_linear",
}
_DECORATORS = {
    "task": "decorators:task",
    "task_group": "decorators:task_group",
    "setup": "decorators:setup",
    "teardown": "decorators:teardown",
}
_EXCEPTIONS = {
    name: f"exceptions:{name}"
    for name in ("AirflowException", "AirflowSkipException", "AirflowFailException",
                 "AirflowTaskTimeout", "AirflowSensorTimeout", "AirflowNotFoundException",
                 "AirflowBadRequest", "AirflowRescheduleException", "ParamValidationError",
                 "DuplicateTaskIdFound", "TaskDeferred")
}
_TIMEZONE = {name: f"dates:{name}" for name in
             ("datetime", "utcnow", "make_aware", "convert_to_utc", "parse", "utc")}

MODULES: dict[str, dict[str, str]] = {
    # Airflow 2: the top-level package and airflow.models
    "airflow": {"DAG": "dag:DAG", "Dataset": "unsupported:", "__version__": "dag:VERSION"},
    "airflow.models": {"DAG": "dag:DAG", "BaseOperator": "operators:BaseOperator",
                       "Param": "params:Param", "XComArg": "xcom:XComArg",
                       "TaskInstance": "context:TaskInstance", "DagRun": "context:DagRun"},
    "airflow.models.taskinstance": {"TaskInstance": "context:TaskInstance"},
    "airflow.models.dagrun": {"DagRun": "context:DagRun"},
    "airflow.models.dag": {"DAG": "dag:DAG", "dag": "dag:dag"},
    "airflow.models.baseoperator": _BASEOPERATOR,
    "airflow.models.param": {"Param": "params:Param", "ParamsDict": "params:ParamsDict"},
    "airflow.models.xcom_arg": {"XComArg": "xcom:XComArg"},
    "airflow.decorators": {**_DECORATORS, "dag": "dag:dag"},
    "airflow.operators": {},
    "airflow.operators.bash": {"BashOperator": "bash:BashOperator"},
    "airflow.operators.bash_operator": {"BashOperator": "bash:BashOperator"},
    "airflow.operators.python": _PYTHON,
    "airflow.operators.python_operator": _PYTHON,
    "airflow.operators.empty": {"EmptyOperator": "operators:EmptyOperator"},
    "airflow.operators.dummy": {"DummyOperator": "operators:EmptyOperator",
                                "EmptyOperator": "operators:EmptyOperator"},
    "airflow.operators.dummy_operator": {"DummyOperator": "operators:EmptyOperator"},
    "airflow.operators.branch": {"BaseBranchOperator": "operators:BaseBranchOperator"},
    "airflow.operators.latest_only": {"LatestOnlyOperator": "operators:LatestOnlyOperator"},
    "airflow.operators.latest_only_operator": {
        "LatestOnlyOperator": "operators:LatestOnlyOperator"},
    "airflow.utils": {},
    "airflow.utils.dates": {"days_ago": "dates:days_ago"},
    "airflow.utils.timezone": _TIMEZONE,
    "airflow.utils.trigger_rule": {"TriggerRule": "links:TriggerRule"},
    "airflow.utils.task_group": {"TaskGroup": "groups:TaskGroup"},
    "airflow.utils.edgemodifier": {"Label": "links:Label"},
    "airflow.utils.helpers": {"chain": "links:chain", "cross_downstream": "links:cross_downstream"},
    "airflow.utils.context": {"Context": "context:Context"},
    "airflow.utils.decorators": {"apply_defaults": "links:apply_defaults"},
    "airflow.utils.state": {"State": "states:State", "TaskInstanceState": "states:State",
                            "DagRunState": "states:DagRunState"},
    "airflow.exceptions": _EXCEPTIONS,
    # Airflow 3: the task SDK, and the standard provider
    "airflow.sdk": {
        "DAG": "dag:DAG3", "dag": "dag:dag3", **_DECORATORS,
        "chain": "links:chain", "cross_downstream": "links:cross_downstream",
        "chain_linear": "links:chain_linear", "Label": "links:Label",
        "TaskGroup": "groups:TaskGroup", "BaseOperator": "operators:BaseOperator",
        "Param": "params:Param", "get_current_context": "context:get_current_context",
        "TriggerRule": "links:TriggerRule", "XComArg": "xcom:XComArg",
        "Context": "context:Context", "timezone": "module:airflow.utils.timezone",
    },
    "airflow.sdk.definitions": {},
    "airflow.sdk.definitions.param": {"Param": "params:Param"},
    "airflow.providers": {},
    "airflow.providers.standard": {},
    "airflow.providers.standard.operators": {},
    "airflow.providers.standard.operators.bash": {"BashOperator": "bash:BashOperator"},
    "airflow.providers.standard.operators.python": _PYTHON,
    "airflow.providers.standard.operators.empty": {"EmptyOperator": "operators:EmptyOperator"},
    "airflow.providers.standard.operators.branch": {
        "BaseBranchOperator": "operators:BaseBranchOperator"},
    "airflow.providers.standard.operators.latest_only": {
        "LatestOnlyOperator": "operators:LatestOnlyOperator"},
    "airflow.providers.standard.utils": {},
}

# What dagd offers instead, by the start of the Airflow name (the longest start wins).
INSTEAD: dict[str, str] = {
    "airflow": "the names listed in the README's 'Coming from Airflow' table, or dagd's own "
               "API (from dagd import DAG, task, ShellTask, HttpTask, SqlTask, ...)",
    "airflow.sensors": "a FileDrop or Webhook trigger starts a run when the thing arrives; "
                       "or a Python task that raises to be retried (retries=, retry_delay=)",
    "airflow.providers.standard.sensors": "a FileDrop or Webhook trigger, or a Python task "
                                          "with retries",
    "airflow.providers.http": "dagd.HttpTask (url, method, json, headers, connections)",
    "airflow.providers.postgres": "dagd.SqlTask with a postgres:// connection",
    "airflow.providers.sqlite": "dagd.SqlTask with a sqlite:// connection",
    "airflow.providers.common.sql": "dagd.SqlTask",
    "airflow.providers.smtp": "dagd.EmailTask, or email= with email_on_failure",
    "airflow.operators.email": "dagd.EmailTask, or email= with email_on_failure",
    "airflow.providers.standard.operators.trigger_dagrun": "a Webhook trigger on the other "
                                                           "DAG, called by an HttpTask",
    "airflow.operators.trigger_dagrun": "a Webhook trigger on the other DAG, called by an "
                                        "HttpTask",
    "airflow.models.Variable": "params= with a run's conf, or a value in the task's env=",
    "airflow.models.variable": "params= with a run's conf, or a value in the task's env=",
    "airflow.sdk.Variable": "params= with a run's conf, or a value in the task's env=",
    "airflow.hooks": "connections in dagd.toml ([connections]), used by HttpTask and SqlTask",
    "airflow.sdk.BaseHook": "connections in dagd.toml ([connections])",
    "airflow.timetables": "schedule= with a cron string, a preset or a timedelta, or a "
                          "dagd Cron(expression, timezone=...)",
    "airflow.Dataset": "a FileDrop trigger or a Webhook trigger",
    "airflow.datasets": "a FileDrop trigger or a Webhook trigger",
    "airflow.sdk.Asset": "a FileDrop trigger or a Webhook trigger",
    "airflow.operators.python.PythonVirtualenvOperator": "a PythonOperator (the function runs "
                                                         "in a dagd worker process)",
    "airflow.operators.python.ExternalPythonOperator": "a PythonOperator",
    "airflow.providers.standard.operators.python.PythonVirtualenvOperator":
        "a PythonOperator (the function runs in a dagd worker process)",
    "airflow.providers.cncf": "a BashOperator running kubectl, or dagd's ShellTask",
    "airflow.providers.docker": "a BashOperator running docker, or dagd's ShellTask",
    "airflow.decorators.task.virtualenv": "@task (the function runs in a worker process)",
    "airflow.decorators.task.external_python": "@task (the function runs in a worker "
                                               "process of dagd's Python)",
    "airflow.operators.python.BranchPythonVirtualenvOperator": "a BranchPythonOperator",
    "airflow.operators.python.BranchExternalPythonOperator": "a BranchPythonOperator",
    "airflow.decorators.task.docker": "@task.bash running docker",
    "airflow.decorators.task.kubernetes": "@task.bash running kubectl",
    "airflow.decorators.task.sensor": "a Python task that raises to be retried",
    "PythonOperator.partial(...).expand(...)": "@task with .partial(...).expand(...)",
    "BashOperator.partial(...).expand(...)": "@task.bash with .partial(...).expand(...)",
    "XComArg.map": "a task that takes the list and returns the mapped one, or expand() "
                   "over a task that returns the items",
    "XComArg.zip": "a task that zips the lists and returns the pairs",
}


def instead(name: str) -> str:
    """What dagd offers in place of the Airflow name `name`."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        hint = INSTEAD.get(".".join(parts[:n]))
        if hint is not None:
            return hint
    return INSTEAD["airflow"]


def is_package(name: str) -> bool:
    """True if some module of the map is inside `name` (it is served as a package)."""
    prefix = name + "."
    return any(m.startswith(prefix) for m in MODULES)
