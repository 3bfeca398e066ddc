"""One shared stack (image repository, artifact bucket, GitHub OIDC) and one stack per
environment (cluster, roles, network, secrets, logs)."""
