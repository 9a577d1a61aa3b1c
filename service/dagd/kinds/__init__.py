"""Built-in task kinds beyond Python functions: `ShellTask` (a command in its own process
group) and `HttpTask` (one request with aiohttp). Each renders its string settings with
the sandboxed templates of `dagd.templating` when it runs, and runs in the daemon's loop.
"""
