"""Supervision: which jobs need a repair and what to do (policy), doing it and following
it (actions)."""
