"""What the GitHub workflows do beyond calling public actions: promotion, pull-request schemas,
Slim CI reports, stack outputs. Each piece is a function with tests; `ferry` exposes them."""
