"""One router per task, plus health."""
