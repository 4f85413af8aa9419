from archlab.runs.store import RunNotFoundError, RunRecord, RunStore, read_metrics

__all__ = ["RunNotFoundError", "RunRecord", "RunStore", "read_metrics"]
