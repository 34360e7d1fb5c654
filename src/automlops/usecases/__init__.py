"""The use cases, written once over the ports: upload, models, promotion and rollback,
lineage, runs and dead letters.

The CLI (local and `automlops aws`), the dashboard and any other front end parse their input,
call one function here and render the typed record it returns; the rules (names, limits,
validation, which queues) live here or in the modules these call, never in a front end.
Nothing here prints.
"""
