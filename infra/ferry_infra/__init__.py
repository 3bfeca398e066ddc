"""ferry's AWS infrastructure as a CDK app: typed configuration, stacks, and the constructs they
are made of. `infra/app.py` builds the stacks from `environments.FERRY`."""
