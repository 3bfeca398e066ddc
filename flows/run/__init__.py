"""A run of dbt, owned in one place: `flows.run.owner.run` (plan, execute, judge, publish)."""
