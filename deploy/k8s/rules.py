"""Cross-object rules any Kubernetes deployment of ours must keep (no schema can express them).

Each rule takes the rendered :class:`~deploy.k8s.manifests.Manifests` and returns one line
per violation (none: kept). The rules about this application itself (its settings, measured
needs, Kafka identity, model volume, autoscaling) are in :mod:`deploy.k8s.app_rules`.

- ``security``: every container runs as the image's user (uid 10001), non-root, with the
  runtime's seccomp profile, no privilege escalation, no capabilities and a read-only root
  filesystem (the "restricted" Pod Security Standard, plus the root filesystem), and every
  main container has a writable emptyDir at /tmp;
- ``resources``: every container requests and limits CPU and memory, requests <= limits;
- ``probes``: every probe points at a port its container declares; every long-running
  container has a liveness and a readiness probe;
- ``selectors``: a workload's selector matches its own pod template;
- ``services``: every Service selects a pod template that declares each of its target ports;
  a StatefulSet's serviceName is a headless Service selecting its pods;
- ``service-monitors``: every ServiceMonitor selects a Service that has its endpoint ports;
- ``disruption-budgets``: every PodDisruptionBudget covers exactly one workload and does
  not forbid every eviction;
- ``references``: every ConfigMap, Secret (key) and PersistentVolumeClaim a pod or a KEDA
  TriggerAuthentication names exists (Secrets: in deploy/k8s/secret.example.yaml).
"""

from __future__ import annotations

from collections.abc import Callable

from deploy.k8s.manifests import Container, Manifests, Obj, dig, ident, quantity, selects

#: The image's user (deploy/Dockerfile: useradd --uid 10001).
IMAGE_UID = 10001

Rule = Callable[[Manifests], list[str]]


def security(m: Manifests) -> list[str]:
    """The restricted Pod Security Standard, the image's uid and a read-only root filesystem."""
    errors = []
    for c in m.containers():
        pod_context = c.pod.get("securityContext", {})
        context = c.spec.get("securityContext", {})

        def setting(key: str, ctx: Obj = context, pod_ctx: Obj = pod_context) -> object:
            return ctx.get(key, pod_ctx.get(key))

        if setting("runAsNonRoot") is not True:
            errors.append(f"{c.name}: runAsNonRoot must be true")
        if setting("runAsUser") != IMAGE_UID:
            errors.append(f"{c.name}: runAsUser must be the image's user {IMAGE_UID}")
        seccomp = dig(context, "seccompProfile", "type") or dig(
            pod_context, "seccompProfile", "type"
        )
        if seccomp not in ("RuntimeDefault", "Localhost"):
            errors.append(f"{c.name}: seccompProfile must be RuntimeDefault")
        if context.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{c.name}: allowPrivilegeEscalation must be false")
        if "ALL" not in (dig(context, "capabilities", "drop") or []):
            errors.append(f"{c.name}: capabilities must drop ALL")
        if context.get("readOnlyRootFilesystem") is not True:
            errors.append(f"{c.name}: readOnlyRootFilesystem must be true")
        writable_tmp = any(
            mount.get("mountPath") == "/tmp" and "emptyDir" in volume and not mount.get("readOnly")
            for mount, volume in c.mounts()
        )
        if not c.init and not writable_tmp:
            errors.append(f"{c.name}: needs a writable emptyDir at /tmp (read-only root)")
    return errors


def resources(m: Manifests) -> list[str]:
    """CPU and memory requests and limits on every container, requests <= limits."""
    errors = []
    for c in m.containers():
        declared = c.spec.get("resources", {})
        for resource in ("cpu", "memory"):
            request = dig(declared, "requests", resource)
            limit = dig(declared, "limits", resource)
            if request is None or limit is None:
                errors.append(f"{c.name}: needs a {resource} request and limit")
            elif quantity(request) > quantity(limit):
                errors.append(f"{c.name}: {resource} request {request} is above its limit {limit}")
    return errors


def _port_declared(container: Obj, port: object) -> bool:
    ports = container.get("ports", [])
    if isinstance(port, str):
        return any(p.get("name") == port for p in ports)
    return any(p.get("containerPort") == port for p in ports)


def probes(m: Manifests) -> list[str]:
    """Probes point at declared ports; long-running containers have liveness and readiness."""
    errors = []
    for c in m.containers(init=False):
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probe = c.spec.get(kind)
            if probe is None:
                if kind != "startupProbe" and c.workload.get("kind") in (
                    "Deployment",
                    "StatefulSet",
                ):
                    errors.append(f"{c.name}: has no {kind}")
                continue
            for action in ("httpGet", "tcpSocket", "grpc"):
                port = dig(probe, action, "port")
                if port is not None and not _port_declared(c.spec, port):
                    errors.append(f"{c.name}: {kind} uses port {port!r}, which it does not declare")
    return errors


def selectors(m: Manifests) -> list[str]:
    """A workload's selector matches its own pod template's labels (the API server insists)."""
    errors = []
    for obj, template in m.workloads():
        selector = dig(obj, "spec", "selector")
        if obj.get("kind") in ("Deployment", "StatefulSet", "DaemonSet") and not selects(
            selector, dig(template, "metadata", "labels")
        ):
            errors.append(f"{ident(obj)}: its selector does not match its pod template's labels")
    return errors


def _pod_ports_ok(template: Obj, port: object) -> bool:
    return any(_port_declared(c, port) for c in dig(template, "spec", "containers") or [])


def services(m: Manifests) -> list[str]:
    """Services select pods that declare their target ports; StatefulSets have headless ones."""
    errors = []
    for service in m.of_kind("Service"):
        selector = dig(service, "spec", "selector")
        matched = [t for _, t in m.workloads() if selects(selector, dig(t, "metadata", "labels"))]
        if not matched:
            errors.append(f"{ident(service)}: selects no pod template")
        for port in dig(service, "spec", "ports") or []:
            target = port.get("targetPort", port.get("port"))
            if any(not _pod_ports_ok(t, target) for t in matched):
                errors.append(
                    f"{ident(service)}: targetPort {target!r} is not declared by its pods"
                )
    for workload in m.of_kind("StatefulSet"):
        name = dig(workload, "spec", "serviceName")
        headless = m.get("Service", name) if name else None
        labels = dig(workload, "spec", "template", "metadata", "labels")
        if headless is None:
            errors.append(f"{ident(workload)}: its serviceName {name!r} is no Service here")
        elif dig(headless, "spec", "clusterIP") != "None":
            errors.append(
                f"{ident(workload)}: its Service {name} must be headless (clusterIP None)"
            )
        elif not selects(dig(headless, "spec", "selector"), labels):
            errors.append(f"{ident(workload)}: its Service {name} does not select its pods")
    return errors


def service_monitors(m: Manifests) -> list[str]:
    """ServiceMonitors select Services that have the ports they scrape."""
    errors = []
    for monitor in m.of_kind("ServiceMonitor"):
        selector = dig(monitor, "spec", "selector")
        matched = [
            s for s in m.of_kind("Service") if selects(selector, dig(s, "metadata", "labels"))
        ]
        if not matched:
            errors.append(f"{ident(monitor)}: selects no Service")
        for endpoint in dig(monitor, "spec", "endpoints") or []:
            port = endpoint.get("port")
            for service in matched:
                names = {p.get("name") for p in dig(service, "spec", "ports") or []}
                if port is not None and port not in names:
                    errors.append(f"{ident(monitor)}: {ident(service)} has no port named {port!r}")
    return errors


def disruption_budgets(m: Manifests) -> list[str]:
    """Each PodDisruptionBudget covers one workload and leaves room for one eviction."""
    errors = []
    for budget in m.of_kind("PodDisruptionBudget"):
        selector = dig(budget, "spec", "selector")
        matched = [
            obj
            for obj, template in m.workloads()
            if obj.get("kind") in ("Deployment", "StatefulSet")
            and selects(selector, dig(template, "metadata", "labels"))
        ]
        if len(matched) != 1:
            errors.append(f"{ident(budget)}: covers {len(matched)} workloads, not exactly 1")
            continue
        replicas = dig(matched[0], "spec", "replicas")
        minimum = dig(budget, "spec", "minAvailable")
        if isinstance(minimum, int) and isinstance(replicas, int) and minimum >= replicas:
            errors.append(
                f"{ident(budget)}: minAvailable {minimum} >= {replicas} replicas forbids "
                "every eviction (node drains would hang)"
            )
    return errors


def _secret_key(m: Manifests, where: str, name: str, key: str | None) -> list[str]:
    data = m.secret_data(name)
    if data is None:
        return [f"{where}: Secret {name!r} is not in deploy/k8s/secret.example.yaml"]
    if key is not None and key not in data:
        return [f"{where}: Secret {name!r} has no key {key!r}"]
    return []


def _container_references(m: Manifests, c: Container) -> list[str]:
    errors = []
    for source in c.spec.get("envFrom", []):
        config = dig(source, "configMapRef", "name")
        if config and m.get("ConfigMap", config) is None:
            errors.append(f"{c.name}: ConfigMap {config!r} does not exist")
        secret = dig(source, "secretRef", "name")
        if secret:
            errors += _secret_key(m, c.name, secret, None)
    for var in c.spec.get("env", []):
        ref = dig(var, "valueFrom", "secretKeyRef")
        if ref and not ref.get("optional"):
            errors += _secret_key(m, c.name, ref["name"], ref["key"])
        ref = dig(var, "valueFrom", "configMapKeyRef")
        if ref and dig(m.get("ConfigMap", ref["name"]), "data", ref["key"]) is None:
            errors.append(f"{c.name}: ConfigMap {ref['name']!r} has no key {ref['key']!r}")
    return errors


def references(m: Manifests) -> list[str]:
    """Every ConfigMap, Secret key and claim that pods and TriggerAuthentications name exists."""
    errors = []
    for c in m.containers():
        errors += _container_references(m, c)
    for obj, template in m.workloads():
        for volume in dig(template, "spec", "volumes") or []:
            secret = volume.get("secret")
            if secret:
                items = secret.get("items") or [{"key": None}]
                for item in items:
                    errors += _secret_key(m, ident(obj), secret["secretName"], item["key"])
            claim = dig(volume, "persistentVolumeClaim", "claimName")
            if claim and m.get("PersistentVolumeClaim", claim) is None:
                errors.append(f"{ident(obj)}: PersistentVolumeClaim {claim!r} does not exist")
            config = dig(volume, "configMap", "name")
            if config and m.get("ConfigMap", config) is None:
                errors.append(f"{ident(obj)}: ConfigMap {config!r} does not exist")
    for auth in m.of_kind("TriggerAuthentication"):
        for ref in dig(auth, "spec", "secretTargetRef") or []:
            errors += _secret_key(m, ident(auth), ref["name"], ref["key"])
    return errors


#: The rules of this module, by the name error lines carry.
RULES: dict[str, Rule] = {
    "security": security,
    "resources": resources,
    "probes": probes,
    "selectors": selectors,
    "services": services,
    "service-monitors": service_monitors,
    "disruption-budgets": disruption_budgets,
    "references": references,
}
