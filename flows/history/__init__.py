"""Run history: every stored run of an environment, read into a local cache and asked with DuckDB.

`fetch` copies what the artifact store holds (summary.json and dbt's run_results.json per run)
into one compact record per run, fetching only runs it has not seen; `query` answers from those
records: the runs, and per-node durations, failure and warning rates and rows affected.
"""
