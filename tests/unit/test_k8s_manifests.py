"""The Kubernetes manifests (deploy/k8s, docs/deploy.md "Kubernetes").

Both overlays are rendered with kustomize and validated against the pinned official schemas,
made strict, and the cross-object rules; then every kind of mistake the validator claims to
catch is made on purpose and must be caught.

Needs kustomize (or kubectl) and the pinned schemas (downloaded once from the Go module proxy
into ~/.cache/stream-text-classifier/k8s-schemas). Without either, these tests fail when
CI=true and are skipped otherwise, saying why.
"""

from __future__ import annotations

import copy
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from deploy.k8s import pins, schemas
from deploy.k8s.app_rules import IMAGE_PLACEHOLDERS
from deploy.k8s.validate import (
    K8S_DIR,
    OVERLAYS,
    Checker,
    Finding,
    RenderError,
    main,
    render,
)

Obj = dict[str, Any]
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _unavailable(what: str) -> None:
    message = f"{what}: the Kubernetes manifests cannot be validated"
    if IN_CI:
        pytest.fail(message + " (CI=true: this must work in CI)")
    pytest.skip(message + " (set CI=true to make this a failure)")


@pytest.fixture(scope="module")
def checker() -> Checker:
    try:
        return Checker()
    except pins.SchemaUnavailableError as exc:
        _unavailable(f"the pinned schemas are not cached and could not be downloaded ({exc})")
        raise


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Obj]]:
    try:
        return {overlay: render(K8S_DIR / "overlays" / overlay) for overlay in OVERLAYS}
    except RenderError as exc:
        _unavailable(str(exc))
        raise


def find(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    for obj in objects:
        if obj["kind"] == kind and (name is None or obj["metadata"]["name"].startswith(name)):
            return obj
    raise AssertionError(f"no {kind} {name or ''}")


def pod(objects: list[Obj], kind: str) -> Obj:
    obj = find(objects, kind)
    if kind == "CronJob":
        obj = obj["spec"]["jobTemplate"]
    spec: Obj = obj["spec"]["template"]["spec"]
    return spec


def main_container(objects: list[Obj], kind: str) -> Obj:
    container: Obj = pod(objects, kind)["containers"][0]
    return container


def consumer_config(objects: list[Obj]) -> dict[str, str]:
    data: dict[str, str] = find(objects, "ConfigMap", "text-classifier-consumer")["data"]
    return data


def check_mutated(
    checker: Checker, rendered: dict[str, list[Obj]], mutate: Callable[[list[Obj]], None]
) -> list[Finding]:
    objects = copy.deepcopy(rendered["exactly-once"])
    mutate(objects)
    return checker.check(objects, "mutated")


# -- both overlays are valid -------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_passes_strict_schemas_and_every_rule(
    checker: Checker, rendered: dict[str, list[Obj]], overlay: str
) -> None:
    findings = checker.check(rendered[overlay], overlay)
    assert findings == [], "\n".join(map(str, findings))
    kinds = {obj["kind"] for obj in rendered[overlay]}
    assert {"StatefulSet", "Deployment", "CronJob", "ScaledObject", "ServiceMonitor"} <= kinds
    assert {"PodDisruptionBudget", "PersistentVolumeClaim", "ConfigMap", "Service"} <= kinds


def test_overlays_differ_in_the_delivery_guarantee(rendered: dict[str, list[Obj]]) -> None:
    for overlay, exactly_once in (("at-least-once", "false"), ("exactly-once", "true")):
        objects = rendered[overlay]
        assert consumer_config(objects)["CLASSIFIER_EXACTLY_ONCE"] == exactly_once
        env = {e["name"]: e for e in main_container(objects, "StatefulSet")["env"]}
        by_pod_name = {"fieldRef": {"fieldPath": "metadata.name"}}
        assert env["CLASSIFIER_GROUP_INSTANCE_ID"]["valueFrom"] == by_pod_name
        if exactly_once == "true":
            assert env["CLASSIFIER_TRANSACTIONAL_ID"]["valueFrom"] == by_pod_name
        else:
            assert "CLASSIFIER_TRANSACTIONAL_ID" not in env


def test_images_are_set_in_one_place(rendered: dict[str, list[Obj]]) -> None:
    kustomization = yaml.safe_load((K8S_DIR / "base" / "kustomization.yaml").read_text())
    assert {image["name"] for image in kustomization["images"]} == IMAGE_PLACEHOLDERS
    images = {
        kind: main_container(rendered["at-least-once"], kind)["image"]
        for kind in ("StatefulSet", "Deployment", "CronJob")
    }
    assert images == {
        "StatefulSet": "stream-text-classifier:local",
        "Deployment": "stream-text-classifier:api",
        "CronJob": "stream-text-classifier:train",
    }


def test_cli_validates_both_overlays_offline_from_the_cache(
    checker: Checker, rendered: dict[str, list[Obj]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--offline"]) == 0
    out = capsys.readouterr().out
    assert "cached, verified" in out
    assert out.count(": ok") == len(OVERLAYS)


# -- strict: the three mistakes the issue names, and more --------------------------------------


def only_schema_errors(findings: list[Finding]) -> list[str]:
    return [f.message for f in findings if f.check == "schema"]


def test_rejects_an_unknown_field_in_a_statefulset_spec(
    checker: Checker, rendered: dict[str, list[Obj]]
) -> None:
    findings = check_mutated(
        checker, rendered, lambda o: find(o, "StatefulSet")["spec"].update(replica=3)
    )
    assert only_schema_errors(findings) == [
        "StatefulSet/text-classifier-consumer: spec: Additional properties are not allowed "
        "('replica' was unexpected)"
    ]


def test_rejects_a_wrong_type(checker: Checker, rendered: dict[str, list[Obj]]) -> None:
    def mutate(objects: list[Obj]) -> None:
        main_container(objects, "Deployment")["ports"][0]["containerPort"] = "8000"

    errors = only_schema_errors(check_mutated(checker, rendered, mutate))
    assert errors == [
        "Deployment/text-classifier-api: spec.template.spec.containers[0].ports[0]."
        "containerPort: '8000' is not of type 'integer'"
    ]


def test_rejects_an_unknown_field_in_the_scaled_object(
    checker: Checker, rendered: dict[str, list[Obj]]
) -> None:
    findings = check_mutated(
        checker, rendered, lambda o: find(o, "ScaledObject")["spec"].update(maxReplicas=4)
    )
    assert only_schema_errors(findings) == [
        "ScaledObject/text-classifier-consumer: spec: Additional properties are not allowed "
        "('maxReplicas' was unexpected)"
    ]


def test_a_typo_in_an_overlay_fails_the_command(
    checker: Checker,
    rendered: dict[str, list[Obj]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """End to end: kustomize renders the typo, the command finds it and exits 1."""
    base = os.path.relpath(K8S_DIR / "overlays" / "at-least-once", tmp_path)  # not absolute
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{base}]\npatches: [{{path: typo.yaml}}]\n"
    )
    (tmp_path / "typo.yaml").write_text(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: text-classifier-consumer}\n"
        "spec: {replica: 3}\n"
    )
    assert main(["--offline", "--overlay", str(tmp_path)]) == 1
    assert "('replica' was unexpected)" in capsys.readouterr().out


SCHEMA_CASES: list[tuple[str, Callable[[list[Obj]], None], str | None]] = [
    (
        "int-or-string as a percentage",
        lambda o: find(o, "PodDisruptionBudget")["spec"].update(maxUnavailable="50%"),
        None,
    ),
    (
        "int-or-string as a boolean",
        lambda o: find(o, "PodDisruptionBudget")["spec"].update(maxUnavailable=True),
        "maxUnavailable: True is not of type 'integer', 'string'",
    ),
    (
        "a quantity as a number",
        lambda o: main_container(o, "Deployment")["resources"]["limits"].update(cpu=2),
        None,
    ),
    (
        "a quantity in no unit the API server knows",
        lambda o: main_container(o, "Deployment")["resources"]["limits"].update(memory="1.5GB"),
        "memory: '1.5GB' does not match",
    ),
    (
        "a misspelt metadata field",
        lambda o: find(o, "Service")["metadata"].update(label={"a": "b"}),
        "metadata: Additional properties are not allowed ('label' was unexpected)",
    ),
    (
        "a missing required field",
        lambda o: main_container(o, "Deployment").pop("name"),
        "containers[0]: 'name' is a required property",
    ),
    (
        "a CRD's CEL rule (minReplicaCount <= maxReplicaCount)",
        lambda o: find(o, "ScaledObject")["spec"].update(minReplicaCount=5, maxReplicaCount=3),
        "spec: minReplicaCount must be less than or equal to maxReplicaCount (CEL rule)",
    ),
    (
        "a KEDA trigger parameter that is not a string",
        lambda o: find(o, "ScaledObject")["spec"]["triggers"][0]["metadata"].update(
            lagThreshold=28910
        ),
        "metadata.lagThreshold: 28910 is not of type 'string'",
    ),
    (
        "a ServiceMonitor interval in no Prometheus duration syntax",
        lambda o: find(o, "ServiceMonitor")["spec"]["endpoints"][0].update(interval="30 sec"),
        "interval: '30 sec' does not match",
    ),
    (
        "a kind no pinned schema defines",
        lambda o: o.append({"apiVersion": "v1", "kind": "Pood", "metadata": {"name": "x"}}),
        "no pinned schema defines v1 Pood",
    ),
    (
        "a wrong apiVersion for a kind",
        lambda o: find(o, "PodDisruptionBudget").update(apiVersion="policy/v1beta1"),
        "no pinned schema defines policy/v1beta1 PodDisruptionBudget",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [c[1:] for c in SCHEMA_CASES], ids=[c[0] for c in SCHEMA_CASES]
)
def test_schema_semantics(
    checker: Checker,
    rendered: dict[str, list[Obj]],
    mutate: Callable[[list[Obj]], None],
    expected: str | None,
) -> None:
    errors = only_schema_errors(check_mutated(checker, rendered, mutate))
    if expected is None:
        assert errors == []
    else:
        assert len(errors) == 1, errors
        assert expected in errors[0]


def test_strict_conversion_of_the_openapi_extensions() -> None:
    """The conversion on its own, on a synthetic CRD-style schema (no download needed)."""
    schema = schemas.strict_schema(
        {
            "type": "object",
            "properties": {
                "port": {"x-kubernetes-int-or-string": True, "anyOf": [{}, {}]},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "closed": {"type": "object", "properties": {"a": {"type": "string"}}},
                "map": {"type": "object", "additionalProperties": {"type": "integer"}},
                "maybe": {"type": "string", "nullable": True},
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "x-kubernetes-preserve-unknown-fields": True,
                },
            },
        }
    )
    schema["$defs"] = {schemas.OBJECT_META: {"type": "object"}}
    validator = Draft202012Validator(schema)

    def errors(instance: Obj) -> list[str]:
        return [e.message for e in validator.iter_errors(instance)]

    embedded = {"apiVersion": "v1", "kind": "Pod", "anything": 1}
    good = {"port": 80, "free": {"x": 1}, "closed": {"a": "b"}, "map": {"k": 1}}
    assert errors(good | {"maybe": None, "template": embedded}) == []
    assert errors({"port": "http"}) == []
    assert errors({"port": 1.5}) == ["1.5 is not of type 'integer', 'string'"]
    assert errors({"closed": {"b": 1}}) == [
        "Additional properties are not allowed ('b' was unexpected)"
    ]
    assert errors({"typo": 1}) == ["Additional properties are not allowed ('typo' was unexpected)"]
    assert errors({"map": {"k": "v"}}) == ["'v' is not of type 'integer'"]
    assert errors({"template": {"anything": 1}}) == [
        "'apiVersion' is a required property",
        "'kind' is a required property",
    ]


# -- the cross-object rules --------------------------------------------------------------------


def config(key: str, value: str) -> Callable[[list[Obj]], None]:
    return lambda objects: consumer_config(objects).update({key: value})


def scaler(**metadata: str) -> Callable[[list[Obj]], None]:
    return lambda o: find(o, "ScaledObject")["spec"]["triggers"][0]["metadata"].update(metadata)


def mount(kind: str, name: str, **changes: Any) -> Callable[[list[Obj]], None]:
    def mutate(objects: list[Obj]) -> None:
        for m in main_container(objects, kind)["volumeMounts"]:
            if m["name"] == name:
                m.update(changes)

    return mutate


def drop_mount(kind: str, name: str) -> Callable[[list[Obj]], None]:
    def mutate(objects: list[Obj]) -> None:
        container = main_container(objects, kind)
        container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != name]

    return mutate


def drop_env(name: str) -> Callable[[list[Obj]], None]:
    def mutate(objects: list[Obj]) -> None:
        container = main_container(objects, "StatefulSet")
        container["env"] = [e for e in container["env"] if e["name"] != name]

    return mutate


def literal_env(name: str, value: str) -> Callable[[list[Obj]], None]:
    def mutate(objects: list[Obj]) -> None:
        container = main_container(objects, "StatefulSet")
        container["env"] = [e for e in container["env"] if e["name"] != name]
        container["env"].append({"name": name, "value": value})

    return mutate


RULE_CASES: list[tuple[str, Callable[[list[Obj]], None], str, str]] = [
    (
        "grace period not above shutdown_timeout_s + margin",
        lambda o: pod(o, "StatefulSet").update(terminationGracePeriodSeconds=45),
        "grace-period",
        "terminationGracePeriodSeconds 45 must exceed shutdown_timeout_s 30 + 15 s",
    ),
    (
        "shutdown timeout raised past the grace period",
        config("CLASSIFIER_SHUTDOWN_TIMEOUT_S", "50"),
        "grace-period",
        "must exceed shutdown_timeout_s 50",
    ),
    (
        "more replicas than partitions",
        lambda o: find(o, "ScaledObject")["spec"].update(maxReplicaCount=13),
        "autoscaling",
        "maxReplicaCount 13 exceeds the input topic's 12 partitions",
    ),
    (
        "partitions assumed differ from the consumer's",
        config("CLASSIFIER_TOPIC_PARTITIONS", "6"),
        "autoscaling",
        "12 partitions assumed, CLASSIFIER_TOPIC_PARTITIONS is 6",
    ),
    (
        "lagThreshold not throughput x budget",
        scaler(lagThreshold="50000"),
        "autoscaling",
        "lagThreshold 50000 != 2891 msgs/s x 10 s",
    ),
    (
        "scale to zero",
        lambda o: find(o, "ScaledObject")["spec"].update(minReplicaCount=0),
        "autoscaling",
        "minReplicaCount must be >= 1",
    ),
    (
        "replicas in the StatefulSet KEDA scales",
        lambda o: find(o, "StatefulSet")["spec"].update(replicas=3),
        "autoscaling",
        "sets replicas, which KEDA owns",
    ),
    (
        "a misspelt Kafka scaler parameter",
        scaler(lagThreshhold="28910"),
        "kafka-trigger",
        "the Kafka scaler has no trigger parameter 'lagThreshhold'",
    ),
    (
        "a scaler value outside its enum",
        scaler(offsetResetPolicy="beginning"),
        "kafka-trigger",
        "offsetResetPolicy 'beginning' is not one of ['latest', 'earliest']",
    ),
    (
        "the scaler reads an environment variable the consumer lacks",
        scaler(topicFromEnv="CLASSIFIER_TOPIC"),
        "kafka-trigger",
        "topicFromEnv names 'CLASSIFIER_TOPIC', not in the consumer's environment",
    ),
    (
        "the scaler's SASL mechanism differs from the consumer's",
        scaler(sasl="scram_sha256"),
        "kafka-trigger",
        "sasl is 'scram_sha256', the consumer's setting is 'scram_sha512'",
    ),
    (
        "a liveness probe on an undeclared port",
        lambda o: main_container(o, "StatefulSet")["livenessProbe"]["httpGet"].update(
            port="metric"
        ),
        "probes",
        "livenessProbe uses port 'metric', which it does not declare",
    ),
    (
        "metrics served on another port than the probes use",
        config("CLASSIFIER_METRICS_PORT", "9465"),
        "health-endpoints",
        "livenessProbe must be GET /healthz on port 9465",
    ),
    (
        "readiness on the liveness endpoint",
        lambda o: main_container(o, "Deployment")["readinessProbe"]["httpGet"].update(
            path="/healthz"
        ),
        "health-endpoints",
        "readinessProbe must be GET /readyz on port 8000",
    ),
    (
        "an API replica without the models volume",
        drop_mount("Deployment", "models"),
        "models-volume",
        "its model directory '/models/bbc' is on no claim it mounts",
    ),
    (
        "a consumer replica mounting the models writable",
        mount("StatefulSet", "models", readOnly=False),
        "models-volume",
        "must mount the models claim read-only",
    ),
    (
        "a models claim that is not ReadWriteMany",
        lambda o: find(o, "PersistentVolumeClaim")["spec"].update(accessModes=["ReadWriteOnce"]),
        "models-volume",
        "must be ReadWriteMany",
    ),
    (
        "the trainer writing another model directory",
        lambda o: main_container(o, "CronJob").update(
            args=["--dataset", "ag_news", "--output", "/models/ag_news"]
        ),
        "models-volume",
        "use different model directories",
    ),
    (
        "exactly-once without a transactional id",
        drop_env("CLASSIFIER_TRANSACTIONAL_ID"),
        "identity",
        "CLASSIFIER_TRANSACTIONAL_ID must be the pod name",
    ),
    (
        "one group instance id shared by every replica",
        literal_env("CLASSIFIER_GROUP_INSTANCE_ID", "consumer"),
        "identity",
        "CLASSIFIER_GROUP_INSTANCE_ID must be the pod name",
    ),
    (
        "a misspelt setting",
        config("CLASSIFIER_MAX_BACH_SIZE", "128"),
        "settings",
        "CLASSIFIER_MAX_BACH_SIZE is no setting of python -m consumer",
    ),
    (
        "a setting the consumer refuses",
        config("CLASSIFIER_MAX_BATCH_SIZE", "lots"),
        "settings",
        "max_batch_size: Input should be a valid integer",
    ),
    (
        "a password file where no secret is mounted",
        config("CLASSIFIER_KAFKA_SASL_PASSWORD_FILE", "/etc/kafka/sasl-password"),
        "settings",
        "cannot read '/etc/kafka/sasl-password'",
    ),
    (
        "a trainer argument python -m training.fit refuses",
        lambda o: main_container(o, "CronJob")["args"].extend(["--epochs", "0"]),
        "settings",
        "epochs",
    ),
    (
        "a trainer flag python -m training.fit does not know",
        lambda o: main_container(o, "CronJob")["args"].extend(["--epoch", "3"]),
        "settings",
        "python -m training.fit refuses its arguments",
    ),
    (
        "a writable root filesystem",
        lambda o: main_container(o, "CronJob")["securityContext"].update(
            readOnlyRootFilesystem=False
        ),
        "security",
        "trainer: readOnlyRootFilesystem must be true",
    ),
    (
        "running as root",
        lambda o: pod(o, "Deployment")["securityContext"].update(runAsUser=0),
        "security",
        "runAsUser must be the image's user 10001",
    ),
    (
        "a request above its limit",
        lambda o: main_container(o, "StatefulSet")["resources"]["requests"].update(memory="2Gi"),
        "resources",
        "memory request 2Gi is above its limit 1536Mi",
    ),
    (
        "a memory request below the measured peak",
        lambda o: main_container(o, "StatefulSet")["resources"]["requests"].update(memory="512Mi"),
        "measured-resources",
        "memory request below 1 x 844 MiB",
    ),
    (
        "two processes on one process's requests",
        config("CLASSIFIER_PROCESSES", "2"),
        "measured-resources",
        "cpu request below 2 x 1.1",
    ),
    (
        "a Service port no pod declares",
        lambda o: find(o, "Service", "text-classifier-api")["spec"]["ports"][0].update(
            targetPort="web"
        ),
        "services",
        "targetPort 'web' is not declared by its pods",
    ),
    (
        "a ServiceMonitor on a port its Service lacks",
        lambda o: find(o, "ServiceMonitor", "text-classifier-consumer")["spec"]["endpoints"][
            0
        ].update(port="prometheus"),
        "service-monitors",
        "has no port named 'prometheus'",
    ),
    (
        "a disruption budget that forbids every eviction",
        lambda o: find(o, "PodDisruptionBudget", "text-classifier-api")["spec"].update(
            minAvailable=2
        ),
        "disruption-budgets",
        "minAvailable 2 >= 2 replicas forbids every eviction",
    ),
    (
        "a Secret key the example Secret lacks",
        lambda o: pod(o, "StatefulSet")["volumes"][1]["secret"]["items"][0].update(key="password"),
        "references",
        "Secret 'text-classifier-kafka' has no key 'password'",
    ),
    (
        "an image kustomize did not set",
        lambda o: main_container(o, "Deployment").update(image="stream-text-classifier-api"),
        "images",
        "was not set by kustomize images:",
    ),
    (
        "a selector that misses its own pods",
        lambda o: find(o, "Deployment")["spec"]["selector"]["matchLabels"].update(
            {"app.kubernetes.io/component": "web"}
        ),
        "selectors",
        "its selector does not match its pod template's labels",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "rule", "expected"), [c[1:] for c in RULE_CASES], ids=[c[0] for c in RULE_CASES]
)
def test_rule_catches(
    checker: Checker,
    rendered: dict[str, list[Obj]],
    mutate: Callable[[list[Obj]], None],
    rule: str,
    expected: str,
) -> None:
    findings = check_mutated(checker, rendered, mutate)
    assert any(f.check == rule and expected in f.message for f in findings), "\n".join(
        map(str, findings)
    )
    assert not any(f.check == "schema" for f in findings), "the mutation itself must be valid"


# -- downloads: pinned and verified ------------------------------------------------------------


def test_goproxy_choice() -> None:
    assert pins.go_proxy({}) == "https://proxy.golang.org"
    assert pins.go_proxy({"GOPROXY": "direct"}) == "https://proxy.golang.org"
    assert pins.go_proxy({"GOPROXY": "https://a.example,direct"}) == "https://a.example"
    assert pins.go_proxy({"GOPROXY": "direct|https://b.example"}) == "https://b.example"
    with pytest.raises(pins.SchemaUnavailableError, match="GOPROXY=off"):
        pins.go_proxy({"GOPROXY": "off"})


def test_a_download_that_does_not_match_its_pin_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy serving other bytes for a pinned version: nothing is cached."""
    module = pins.PROMETHEUS_OPERATOR
    proxy = tmp_path / "proxy"
    zip_path = Path(module.zip_url(str(proxy)))
    zip_path.parent.mkdir(parents=True)
    with zipfile.ZipFile(zip_path, "w") as archive:
        for relative in module.files:
            archive.writestr(f"{module.name}/{relative}", json.dumps({"tampered": True}))
    monkeypatch.setenv("GOPROXY", proxy.as_uri())
    monkeypatch.setattr(pins, "MODULES", (module,))
    cache = tmp_path / "cache"
    with pytest.raises(pins.SchemaUnavailableError, match=r"sha256 is .* pinned"):
        pins.ensure_schemas(cache)
    assert not any(p.is_file() for p in cache.rglob("*"))
    with pytest.raises(pins.SchemaUnavailableError, match="is not cached"):
        pins.ensure_schemas(cache, allow_download=False)


def test_go_checksum_hash_of_a_zip(tmp_path: Path) -> None:
    """go.sum's h1: the sha256 of "<sha256>  <name>\\n" lines over the sorted files, base64."""
    path = tmp_path / "m.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("m@v1.0.0/go.mod", "module m\n")
        archive.writestr("m@v1.0.0/a.go", "package m\n")
    # What golang.org/x/mod@v0.22.0 sumdb/dirhash.HashZip(path, Hash1) prints for this zip.
    assert pins.go_h1(path) == "h1:exj742mZOS+hMSya0MBBswVVh9ip8vZgmJ15akDldiY="
