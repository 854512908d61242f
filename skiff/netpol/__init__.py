"""NetworkPolicy (networking.k8s.io/v1) enforced with nftables in each node's network namespace."""
