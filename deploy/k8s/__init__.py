"""Kubernetes manifests of the classifier (kustomize base + overlays) and their offline checks.

``pins`` downloads and verifies the pinned Kubernetes, KEDA and Prometheus-operator schemas;
``schemas`` makes them strict; ``rules``, ``app_rules`` and ``keda_rules`` hold the cross-object
rules no schema can express, over the rendered objects of ``manifests``; ``validate`` renders
the overlays with kustomize and runs both (``python -m deploy.k8s.validate``). See
docs/deploy.md.
"""
