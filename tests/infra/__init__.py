"""Tests of the CDK app in infra/: synthesized offline, asserted with matchers."""
