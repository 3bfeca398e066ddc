"""Everything that speaks to Prefect: node runs, events, the API probe, the writer slot, the
deployments and the local stack. The run itself (flows/run/) knows none of it: the flow hands
these in (a node listener, a writer slot) and reads the run's outcome back."""
