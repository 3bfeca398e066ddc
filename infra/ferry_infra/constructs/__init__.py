"""Constructs named for what they are; each one owns its resources and its IAM statements."""
