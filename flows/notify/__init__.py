"""Alerts: the `dbt` flow's outcome events turned into notifications by Prefect automations.

`automations.yaml` (beside prefect.yaml) declares both halves: the notification channels
(Prefect notification blocks, secrets from the environment) and the automations that send to
them. `channels` creates or updates the blocks, `automations` the automations; both match what
exists by name, so applying twice changes nothing.
"""
