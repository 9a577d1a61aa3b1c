"""injection: a ShellTask whose command is `echo MSG={{ conf.msg }}`, triggered by
webhook bodies that try, with every shell metacharacter class, to run
`touch MARKERS/pwned-N`. A violation: any marker file exists once the runs have ended.

Also counted, as information: how many runs echoed the message exactly as sent (what a
correctly quoted value gives).
"""

from __future__ import annotations

from pathlib import Path

from faults.harness import Context, Result

DAG = """
    from dagd import DAG, ShellTask, Webhook

    with DAG("echoer", triggers=[Webhook("echo", secret_env="FAULTS_SECRET")],
             max_active_runs=100):
        ShellTask(task_id="echo", command="echo MSG={{ conf.msg }}")
"""


def payloads(markers: Path) -> list[tuple[str, str]]:
    """(class, message): each message, if it reaches a shell unquoted, creates a marker."""
    m = str(markers)
    templates = [
        ("semicolon", "x; touch {p}"),
        ("and", "x && touch {p}"),
        ("or", "x; false || touch {p}"),
        ("pipe", "x | touch {p}"),
        ("background", "x & touch {p}"),
        ("command substitution", "$(touch {p})"),
        ("command substitution, quoted", '"$(touch {p})"'),
        ("backticks", "`touch {p}`"),
        ("newline", "x\ntouch {p}"),
        ("carriage return and newline", "x\r\ntouch {p}"),
        ("single quote", "x' ; touch {p} ; echo '"),
        ("double quote", 'x" ; touch {p} ; echo "'),
        ("globbing", "x;/*/t?uch {p}"),
        ("leading dash", "-n; touch {p}"),
        ("leading double dash", "--; touch {p}"),
        ("IFS", "x;touch${{IFS}}{p}"),
        ("redirection", "x > {p}"),
        ("append redirection", "x >> {p}"),
        ("subshell", "(touch {p})"),
        ("brace group", "{{ touch {p}; }}"),
        ("escaped newline", "x\\\ntouch {p}"),
        ("eval", "x; eval 'touch {p}'"),
        ("template in the value", "{{{{ 7 * 7 }}}}; touch {p}"),
    ]
    return [(name, t.format(p=f"{m}/pwned-{i}")) for i, (name, t) in
            enumerate(templates, 1)]


def run(ctx: Context) -> Result:
    result = Result()
    f = result.figures
    markers = Path(ctx.tmp) / "markers"
    markers.mkdir(parents=True)
    inst = ctx.install("injection")
    inst.write_dag("echoer.py", DAG)
    daemon = inst.start()
    sent = payloads(markers)
    run_ids: dict[int, tuple[str, str]] = {}
    for i, (name, msg) in enumerate(sent, 1):
        reply = daemon.post("/hooks/echo", {"msg": msg}, headers={"Idempotency-Key": f"p{i}"})
        if not result.check(reply.status == 202, f"{name}: the webhook got {reply.status}"):
            continue
        run_ids[int(reply.json()["run_id"])] = (name, msg)
    states = inst.wait_final(list(run_ids), timeout=60)
    verbatim = 0
    for attempt in inst.attempts("echoer"):
        name, msg = run_ids.get(attempt["run_id"], ("", ""))
        try:
            text = Path(attempt["log_path"]).read_bytes().decode(errors="replace")
        except OSError:
            text = ""
        verbatim += text.endswith(f"MSG={msg}\n")  # after dagd's own notes
    created = sorted(p.name for p in markers.iterdir())
    by_marker = {f"pwned-{i}": name for i, (name, _) in enumerate(sent, 1)}
    f["payload classes"] = len(sent)
    f["runs"] = {s: list(states.values()).count(s) for s in sorted(set(states.values()))}
    f["echoed exactly as sent"] = f"{verbatim} of {len(run_ids)}"
    f["marker files created"] = len(created)
    f["classes that ran a command"] = [by_marker.get(n, n) for n in created] or "none"
    ran = ", ".join(by_marker.get(n, n) for n in created)
    result.check(not created, f"{len(created)} of {len(sent)} payloads ran a command "
                              f"(markers created): {ran}")
    daemon.stop()
    return result
