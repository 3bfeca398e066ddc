"""The refusal dbt knowledge raises: the input it was given cannot work, and the caller's to fix.

A project directory without dbt_project.yml, a target the profile lacks, a selection that
matches nothing, packages that cannot be installed: each is bad input, not a failure of dbt or
the warehouse. flows/dbt raises its own type, knowing nothing of who asked (STYLE.md, "Layers
point one way"); the run layer raises it again as its own refusal (`InvalidRunRequest`, exit
code 2), the CLI's other commands classify it as bad input.
"""

from __future__ import annotations


class InvalidDbtInput(ValueError):
    """dbt cannot take the input as given; the message says what to change. Exit code 2."""
