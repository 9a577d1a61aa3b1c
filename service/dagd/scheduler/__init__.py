"""The scheduler: the pure planner and the loop that turns events into runs and runs
into attempts."""
