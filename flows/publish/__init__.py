"""Blue-green publishing of the data: versions built apart, consumers switched to them in one
transaction, and back (docs/architecture.md, "Publishing the data: blue-green")."""
