"""`ferry ci diff`: what a pull request's build did to the data, model by model, against
production's tables - computed in the warehouse through the run's own dbt connection.

`of_run` is the whole of it for one Slim CI run: `targets` reads which models to compare and how
(relations, keys, sensitive columns) from the run's and production's manifests; `sql` writes the
statements per warehouse; `compare` runs them within a budget; `records` is the stored result
(diff.json); `render` its pull-request section.
"""
