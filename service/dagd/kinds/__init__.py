"""Built-in task kinds beyond Python functions, one module each (`shell`: ShellTask, a
command in its own process group; `http`: HttpTask, one request with aiohttp; ...), and
the named connections from the config that they use (`connections`). Every kind renders
its string settings with the sandboxed templates of `dagd.templating` when it runs.
"""
