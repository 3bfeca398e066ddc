"""Everything that speaks to Prefect: node runs, events, the API probe, the run's holds, the
deployments and the local stack. The run itself (flows/run/) knows none of it: the flow hands
these in (a node listener, the holds) and reads the run's outcome back."""
