"""The fault suite (`make faults`): scenarios against a real `dagd run`; see run.py."""
