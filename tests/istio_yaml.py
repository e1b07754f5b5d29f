"""Istio YAML the lab and k8s tests share."""

from __future__ import annotations


def destination_rule(host: str, *versions: str) -> str:
    """A DestinationRule for ``host`` with one subset per version (label ``version: VERSION``)."""
    subsets = "".join(f"  - {{name: {v}, labels: {{version: {v}}}}}\n" for v in versions)
    return (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        f"metadata: {{name: {host}}}\nspec:\n  host: {host}\n  subsets:\n{subsets}"
    )
