"""Deployment: the image and the Kubernetes manifests are valid and agree with the project.

No Docker engine and no Kubernetes here, so the checks are static but real: hadolint on the
Dockerfile, the KubeRay CRD schemas and the Kubernetes API schemas on every manifest (unknown
keys included: the API server would drop them silently), and every cross-reference a typo breaks
(volumes, claims, ConfigMap keys, image tags, Ray version, the entrypoint's config and its paths).
The paper configs may name only Hub ids known to exist.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import pytest
import ray
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from ot_ray.config import Config, SourceSpec, load_config
from ot_ray.data.sources import fill

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "docker" / "Dockerfile"
LOCK = REPO / "docker" / "constraints.txt"  # written by .ci/lock
LOCK_PATH = "docker/constraints.txt"  # as the install commands name it
K8S = REPO / "docker" / "k8s"
CRDS = REPO / "tests" / "data" / "kuberay"
SHARED_CRDS = REPO.parent / "shared" / "kuberay"
OLDEST_CRDS = CRDS / "v1.5.1"  # the oldest KubeRay the README supports (>= 1.5.1)
KNOWN_IDS = REPO / "tests" / "data" / "known_hub_ids.yaml"
IMAGE_HOME = "/home/ray/ot-ray"  # the Dockerfile's WORKDIR
KUBERNETES_VERSION = "1.33.0"
CONFIGS = REPO / "configs"
PAPER_CONFIGS = [*sorted(CONFIGS.glob("paper_*.yaml")), CONFIGS / "search_paper.yaml"]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------- helpers


def dockerfile_args() -> dict[str, str]:
    args = re.findall(r"^ARG (\w+)=(\S+)", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    return dict(args)


def dockerfile_instructions(name: str) -> list[str]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    return re.findall(rf"^{name} (.+)$", text, re.M)


def pip_installs(text: str, args: dict[str, str] | None = None) -> set[str]:
    """Every ``pip install`` in ``text``, normalised to what it installs: options dropped, quotes
    and extras removed, build arguments replaced by their defaults."""
    for name, value in (args or {}).items():
        text = text.replace("${" + name + "}", value)
    commands = set()
    for match in re.finditer(r"pip install ([^&;\n]+)", text):
        words = shlex.split(match.group(1))
        kept, skip = [], False
        for word in words:
            if skip:
                skip = False
            elif word in ("--index-url", "-i", "--extra-index-url"):
                skip = True
            elif word.startswith("--") or word.startswith("#"):
                if word.startswith("#"):
                    break
            else:
                kept.append(re.sub(r"\[[^]]*\]$", "", word))
        commands.add("pip install " + " ".join(kept))
    return commands


def lock_pins(text: str | None = None) -> dict[str, Requirement]:
    """The lock's requirements by normalised (PEP 503) name."""
    text = LOCK.read_text(encoding="utf-8") if text is None else text
    pins: dict[str, Requirement] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            assert name not in pins, f"{name} is pinned twice"
            pins[name] = requirement
    return pins


def pinned_version(requirement: Requirement) -> str | None:
    """The version of an exact pin (``name==1.2.3``), else None."""
    specs = list(requirement.specifier)
    if len(specs) != 1 or requirement.url or requirement.marker or requirement.extras:
        return None
    (spec,) = specs
    return spec.version if spec.operator == "==" and "*" not in spec.version else None


def lock_environment() -> dict[str, str]:
    """The marker environment the lock was made for: the image's Python on Linux x86_64."""
    python = re.fullmatch(r"py3(\d+)-.*", dockerfile_args()["RAY_FLAVOR"])
    assert python
    env = default_environment()
    env.update(
        python_version=f"3.{python.group(1)}",
        python_full_version=f"3.{python.group(1)}.0",
        sys_platform="linux",
        platform_system="Linux",
        platform_machine="x86_64",
        os_name="posix",
        implementation_name="cpython",
        platform_python_implementation="CPython",
    )
    return env


def project_requirements(env: dict[str, str] | None = None) -> list[tuple[str, Requirement]]:
    """Every requirement of pyproject.toml that applies on the lock's platform (or ``env``'s),
    with the extra that asks for it ("" for the dependencies)."""
    listed = [("", line) for line in PYPROJECT["project"]["dependencies"]]
    for extra, lines in PYPROJECT["project"]["optional-dependencies"].items():
        listed += [(extra, line) for line in lines]
    env = env or lock_environment()
    found = []
    for extra, line in listed:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({**env, "extra": extra}):
            found.append((extra, requirement))
    return found


def unpinned_or_out_of_range(pins: dict[str, Requirement]) -> list[str]:
    found = []
    for extra, requirement in project_requirements():
        name = canonicalize_name(requirement.name)
        if name == "torch":
            continue  # pinned by each install command (the image's from PyTorch's index)
        where = f"{requirement} ({f'[{extra}]' if extra else 'dependencies'})"
        if name not in pins:
            found.append(f"{where}: not in the lock")
            continue
        version = pinned_version(pins[name])
        if version is None:
            found.append(f"{where}: {pins[name]} is not an exact pin")
        elif not requirement.specifier.contains(version, prereleases=True):
            found.append(f"{where}: the lock's {version} is outside the range")
    return found


def installed_versions() -> dict[str, str]:
    """Every distribution the running interpreter sees, by normalised name (the first on
    sys.path, the one that is imported, when a name is there twice)."""
    installed: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        installed.setdefault(canonicalize_name(dist.metadata["Name"]), dist.version)
    return installed


def off_the_lock(pins: dict[str, Requirement], installed: dict[str, str]) -> list[str]:
    """The pinned distributions installed at another version (a local label such as +cpu
    included: the lock names none)."""
    found = []
    for name, pin in sorted(pins.items()):
        if name in installed:
            version = pinned_version(pin)
            if version is None or Version(installed[name]) != Version(version):
                found.append(f"{name}: {installed[name]} installed, the lock says {pin.specifier}")
    return found


def manifests() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                docs.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return docs


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in manifests() if doc["kind"] == kind]


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod template's spec: Deployments, and the head and worker groups of Ray objects."""
    for where, doc in manifests():
        if doc["kind"] == "Deployment":
            yield where, doc["spec"]["template"]["spec"]
        if doc["kind"] == "RayJob" and doc["spec"].get("submissionMode") == "K8sJobMode":
            # KubeRay's default submitter pod has no security context: the template must be ours
            yield f"{where} submitter", doc["spec"]["submitterPodTemplate"]["spec"]
        cluster = ray_cluster_spec(doc)
        if cluster is not None:
            yield f"{where} head", cluster["headGroupSpec"]["template"]["spec"]
            for group in cluster.get("workerGroupSpecs", []):
                yield f"{where} {group['groupName']}", group["template"]["spec"]


def ray_cluster_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc["kind"] == "RayCluster":
        return doc["spec"]
    if doc["kind"] == "RayJob":
        return doc["spec"]["rayClusterSpec"]
    return None


def crd_schema(kind: str, folder: Path = CRDS) -> dict[str, Any]:
    name = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}[kind]
    with gzip.open(folder / f"{name}.gz", "rt", encoding="utf-8") as handle:
        crd = yaml.safe_load(handle)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def undeclared_keys(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Keys the structural schema does not declare (the API server would prune them)."""
    found = []
    if isinstance(value, dict) and schema.get("type") == "object":
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return []
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if properties is not None and key in properties:
                found += undeclared_keys(item, properties[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                found += undeclared_keys(item, extra, f"{path}.{key}")
            elif properties is not None and not extra:
                found.append(f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += undeclared_keys(item, schema["items"], f"{path}[{index}]")
    return found


def config_sources(config: Config) -> Iterator[tuple[SourceSpec, str]]:
    """Every (source, language) the trial reads, as :func:`ot_ray.preflight.check_data` reads
    them."""
    data = config.data
    for lang in data.languages:
        for spec in data.parallel.train_sources(lang):
            yield spec, lang
    for lang in data.all_eval_languages[1:]:
        if data.parallel.dev.covers(lang):
            yield data.parallel.dev, lang
    for task in config.task.tasks:
        sources = getattr(data, task)
        yield sources.train, data.pivot
        for split in (sources.dev, sources.test):
            for lang in data.all_eval_languages:
                if split.covers(lang):
                    yield split, lang


# -------------------------------------------------------------------------------------- Docker


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_installs_what_readme_and_ci_install():
    readme = pip_installs((REPO / "README.md").read_text(encoding="utf-8"))
    ci = pip_installs((REPO / ".ci" / "run").read_text(encoding="utf-8"))
    image = pip_installs(DOCKERFILE.read_text(encoding="utf-8"), dockerfile_args())
    assert ci == {"pip install torch==2.13.0", f"pip install -c {LOCK_PATH} -e ."}, ci
    assert ci <= readme, readme
    # The image installs the project in two steps (dependencies, then the source, --no-deps)
    # with the same commands and the same lock; the torch wheel comes from the CUDA (or CPU)
    # index.
    assert image == ci, image


def test_ci_runs_the_readmes_two_commands_verbatim():
    """The README contract: the quick start's install-and-run command and its test command are
    what CI runs, character for character."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", quick_start, flags=re.S)
    assert len(commands) == 2, commands
    assert commands[0].endswith("python jobs/tune.py") and "python -m pytest" in commands[1]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    for command in commands:
        assert command in ci, command


def test_image_matches_the_projects_ray_and_python():
    args = dockerfile_args()
    assert args["RAY_VERSION"] == ray.__version__
    ray_requirement = next(
        Requirement(r) for r in PYPROJECT["project"]["dependencies"] if r.startswith("ray")
    )
    assert ray_requirement.specifier.contains(args["RAY_VERSION"])
    python = re.fullmatch(r"py3(\d+)-(gpu|cpu|cu\d+)", args["RAY_FLAVOR"])
    assert python, args["RAY_FLAVOR"]
    python_version = f"3.{python.group(1)}"
    assert SpecifierSet(PYPROJECT["project"]["requires-python"]).contains(python_version)
    assert python.group(2).startswith("cu"), "the default image is the CUDA one"
    cuda = python.group(2)[2:]
    assert args["TORCH_INDEX"].endswith(f"/cu{cuda}"), "torch's CUDA build matches the image's"
    assert dockerfile_instructions("WORKDIR") == [IMAGE_HOME]


def test_dependency_floors_admit_only_versions_with_what_the_deployment_uses():
    """Ray token authentication (``authOptions.mode: token``) exists from Ray 2.52.0, and
    ``mlflow server --allowed-hosts`` (tracking.yaml) from MLflow 3.5.0."""
    requirements = {
        (r := Requirement(line)).name: r for line in PYPROJECT["project"]["dependencies"]
    }
    for name, oldest, below in (("ray", "2.52.0", "2.51.2"), ("mlflow", "3.5.0", "3.4.0")):
        specifier = requirements[name].specifier
        assert specifier.contains(oldest) and not specifier.contains(below), (name, specifier)


def test_a_readme_edit_reinstalls_no_dependency():
    """The layer that installs the dependencies copies pyproject.toml and the lock only: the
    README (and the sources) come in later layers, followed by the project's own --no-deps
    install."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    steps = re.findall(r"^(COPY|RUN) (.+)$", text, re.M)
    (deps,) = [
        i
        for i, (kind, line) in enumerate(steps)
        if kind == "RUN" and f"pip install -c {LOCK_PATH} -e ." in line
    ]
    (project,) = [
        i
        for i, (kind, line) in enumerate(steps)
        if f"pip install --no-deps -c {LOCK_PATH} -e ." in line
    ]

    def copied(lines):
        return [
            source
            for kind, line in lines
            if kind == "COPY"
            for source in [w for w in line.split() if not w.startswith("--")][:-1]
        ]

    copied_before, copied_after = copied(steps[:deps]), copied(steps[deps:project])
    assert copied_before == ["pyproject.toml", LOCK_PATH], copied_before
    # the lock lands where the install commands name it
    (lock_copy,) = [line for kind, line in steps[:deps] if kind == "COPY" and LOCK_PATH in line]
    assert lock_copy.split()[-1].rstrip("/") in ("./docker", "docker", f"./{LOCK_PATH}"), lock_copy
    assert {"README.md", "ot_ray"} <= set(copied_after), copied_after


def test_image_runs_as_non_root_and_bakes_in_no_secret():
    users = dockerfile_instructions("USER")
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    env = " ".join(dockerfile_instructions("ENV"))
    assert "HF_HOME=/mnt/shared/hf" in env and "TOKENIZERS_PARALLELISM=false" in env
    assigned = re.findall(r"(\w+)=", env + " " + " ".join(dockerfile_instructions("ARG")))
    secretish = [
        name
        for name in assigned
        if re.search(r"TOKEN|SECRET|PASSWORD|KEY", name) and name != "TOKENIZERS_PARALLELISM"
    ]
    assert not secretish, secretish


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` out of the build context: the last pattern that matches the
    path or one of its parent folders decides, ``!`` lets it back in."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        regex = ""
        for token in re.split(r"(\*\*/|\*\*|\*|\?)", glob):
            regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                token, re.escape(token)
            )
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


def test_dockerignore_keeps_the_build_context_to_what_the_image_copies():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".git", ".venv", "outputs", "mlflow.db"} <= set(patterns)
    sources = [
        source
        for copy in dockerfile_instructions("COPY")
        for source in [w for w in copy.split() if not w.startswith("--")][:-1]
    ]
    assert LOCK_PATH in sources
    for source in sources:
        assert not dockerignored(source, patterns) and (REPO / source).exists(), source
    # the rest of docker/ (the manifests) and the tests stay out
    left_out = ["docker/Dockerfile", "docker/k8s/rayjob-paper-mbert.yaml", "tests/conftest.py"]
    for path in [*left_out, ".git/HEAD", ".venv/bin/python"]:
        assert dockerignored(path, patterns), path


def test_the_dockerignore_check_reads_patterns_as_docker_does():
    patterns = ["docker", "!docker/constraints.txt", "**/__pycache__", "*.egg-info"]
    assert not dockerignored("docker/constraints.txt", patterns)
    assert dockerignored("docker/Dockerfile", patterns)
    assert dockerignored("ot_ray/__pycache__/x.pyc", patterns)
    assert dockerignored("__pycache__", patterns)
    assert dockerignored("ot_ray.egg-info/PKG-INFO", patterns)
    assert not dockerignored("ot_ray/config.py", patterns)
    assert dockerignored("docker/constraints.txt", [*patterns, "docker/*.txt"])


# ------------------------------------------------------------------------------------- the lock


def test_every_requirement_is_pinned_in_the_lock_within_its_range():
    """docker/constraints.txt pins every dependency and every extra's requirement of
    pyproject.toml exactly (torch aside), at a version its range admits."""
    requirements = project_requirements()
    assert len(requirements) >= 20
    assert unpinned_or_out_of_range(lock_pins()) == []


def test_the_lock_check_catches_a_missing_pin_and_one_out_of_range():
    pins = lock_pins()
    pins.pop("pot", None)
    pins.pop("pytest", None)
    pins["mlflow"] = Requirement("mlflow==3.4.0")
    pins["pydantic"] = Requirement("pydantic>=2.7")
    assert {
        "pot>=0.9.6 (dependencies): not in the lock",
        "pytest>=8.0 ([dev]): not in the lock",
        "mlflow>=3.5 (dependencies): the lock's 3.4.0 is outside the range",
        "pydantic<3,>=2.7 (dependencies): pydantic>=2.7 is not an exact pin",
    } <= set(unpinned_or_out_of_range(pins))


def test_the_lock_pins_exact_versions_from_pypi_and_no_torch():
    """torch is pinned by each install command instead: the image's CUDA build (a +cu128 local
    version from PyTorch's index) and the CPU build here could not both meet one pin. Every other
    line is name==version, no URL, no local version, no marker."""
    pins = lock_pins()
    assert "torch" not in pins, pins.get("torch")
    assert len(pins) >= 100
    loose = [str(pin) for pin in pins.values() if pinned_version(pin) is None]
    assert loose == []
    local = [str(pin) for pin in pins.values() if Version(pinned_version(pin)).local]
    assert local == []
    # the image's base already carries Ray: the lock holds that same Ray
    assert pinned_version(pins["ray"]) == dockerfile_args()["RAY_VERSION"]
    with pytest.raises(AssertionError, match="pinned twice"):
        lock_pins("ray==2.60.0\nRay==2.60.0\n")


def test_the_tests_run_on_the_locked_versions():
    """CI installs with the lock (`pip install -c docker/constraints.txt -e '.[dev]'`), so every
    pinned distribution installed here has exactly the pinned version: the versions the image
    ships are the ones these tests ran on."""
    pins, installed = lock_pins(), installed_versions()
    checked = [name for name in pins if name in installed]
    here = project_requirements(default_environment())  # triton: Linux x86_64 only
    direct = {canonicalize_name(r.name) for _, r in here} - {"torch"}
    assert direct <= set(checked), sorted(direct - set(checked))
    assert off_the_lock(pins, installed) == [], (
        "reinstall: pip install -c docker/constraints.txt -e '.[dev]'"
    )


def test_the_installed_version_check_catches_another_version():
    pins = {
        "transformers": Requirement("transformers==5.24.0"),
        "torch": Requirement("torch==2.13.0"),
        "numpy": Requirement("numpy==2.4.6"),
        "pot": Requirement("POT==0.9.7.post1"),
    }
    installed = {"transformers": "4.45.0", "torch": "2.13.0+cpu", "numpy": "2.4.6"}
    assert off_the_lock(pins, installed) == [
        "torch: 2.13.0+cpu installed, the lock says ==2.13.0",
        "transformers: 4.45.0 installed, the lock says ==5.24.0",
    ]


# ---------------------------------------------------------------------------------- Kubernetes


def test_the_manifests_hold_the_objects_the_deployment_needs():
    kinds = sorted({doc["kind"] for _, doc in manifests()})
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "Namespace",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "RayCluster",
        "RayJob",
        "Service",
    ]
    assert not of_kind("Secret"), "secrets are created by the user, never committed"


@pytest.mark.parametrize("kind", ["RayCluster", "RayJob"])
@pytest.mark.parametrize("folder", [CRDS, OLDEST_CRDS], ids=["vendored", "oldest-supported"])
def test_kuberay_objects_match_the_crd_schemas(kind, folder):
    """Against the schemas handed to the project and those of the oldest operator the README
    supports: a key only newer operators know would be pruned silently by an older one."""
    schema = crd_schema(kind, folder)
    docs = of_kind(kind)
    assert docs
    for doc in docs:
        jsonschema.validate(doc, schema)
        assert undeclared_keys(doc, schema) == []


def test_the_strict_check_catches_a_misspelt_key():
    (job,) = of_kind("RayJob")
    job = yaml.safe_load(yaml.safe_dump(job))
    job["spec"]["rayClusterSpec"]["authOption"] = job["spec"]["rayClusterSpec"].pop("authOptions")
    assert undeclared_keys(job, crd_schema("RayJob")) == [".spec.rayClusterSpec.authOption"]
    job["spec"]["shutdownAfterJobFinishes"] = "yes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(job, crd_schema("RayJob"))


def test_core_objects_match_the_kubernetes_schemas():
    core = [(w, d) for w, d in manifests() if not d["apiVersion"].startswith("ray.io/")]
    assert len(core) >= 6
    for where, doc in core:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{where}: {err.message} at {list(err.path)}")


def test_the_vendored_crds_are_the_shared_ones():
    if not SHARED_CRDS.is_dir():
        pytest.skip("../shared/kuberay is not next to this checkout")
    for shared in SHARED_CRDS.glob("*.yaml"):
        with gzip.open(CRDS / f"{shared.name}.gz", "rb") as handle:
            assert handle.read() == shared.read_bytes(), shared.name


def test_pods_mount_what_they_declare_and_reference_what_exists():
    claims = {doc["metadata"]["name"] for doc in of_kind("PersistentVolumeClaim")}
    config_maps = {doc["metadata"]["name"]: doc["data"] for doc in of_kind("ConfigMap")}
    checked = 0
    for where, spec in pod_specs():
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, where
        for container in spec["containers"]:
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{where}: {mount['name']}"
            for variable in container.get("env", []):
                source = variable.get("valueFrom", {})
                if "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    assert ref["key"] in config_maps.get(ref["name"], {}), f"{where}: {ref}"
                if "secretKeyRef" in source:
                    assert source["secretKeyRef"].get("optional") is True, where
            checked += 1
    assert checked >= 5


#: Volume types the "restricted" Pod Security Standard admits.
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip


def restricted_violations(spec: dict[str, Any], extra_containers=()) -> list[str]:
    """What in a pod spec the "restricted" Pod Security Standard refuses, for the fields these
    manifests set or could plausibly set: host namespaces and ports, volume types, privilege,
    escalation, capabilities, root, seccomp (not sysctls, procMount, SELinux or AppArmor, which
    no manifest here touches)."""
    pod = spec.get("securityContext", {})
    found = [key for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        found += [f"volume {volume['name']}: {k}" for k in kinds - RESTRICTED_VOLUMES]
    containers = [*spec.get("initContainers", []), *spec["containers"], *extra_containers]
    for container in containers:
        own = container.get("securityContext", {})
        name = container.get("name", "autoscaler")
        if own.get("privileged"):
            found.append(f"{name}: privileged")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            found.append(f"{name}: host port")
        if own.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        capabilities = own.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            found.append(f"{name}: capabilities not dropped")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: capabilities added")
        if own.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
            found.append(f"{name}: may run as root")
        if 0 in (own.get("runAsUser"), pod.get("runAsUser")):
            found.append(f"{name}: runs as uid 0")
        seccomp = (own.get("seccompProfile") or pod.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: no seccomp profile")
    return found


def test_every_pod_meets_the_restricted_pod_security_standard():
    """The namespace enforces "restricted", so a pod that falls short would be refused at
    creation: every template must pass, the autoscaler sidecar (autoscalerOptions) included."""
    (namespace,) = of_kind("Namespace")
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    autoscaler = {}
    for _, doc in manifests():
        cluster = ray_cluster_spec(doc)
        if cluster and cluster.get("enableInTreeAutoscaling"):
            options = cluster["autoscalerOptions"]
            autoscaler[doc["metadata"]["name"]] = [{"securityContext": options["securityContext"]}]
    checked = 0
    for where, spec in pod_specs():
        is_head = where.endswith(" head")
        extra = autoscaler.get(where.split("/")[-1].split()[0], []) if is_head else []
        assert restricted_violations(spec, extra) == [], where
        checked += 1
    assert checked >= 5 and autoscaler


def test_the_restricted_check_catches_what_the_standard_refuses():
    (deployment,) = of_kind("Deployment")
    spec = yaml.safe_load(yaml.safe_dump(deployment["spec"]["template"]["spec"]))
    spec["hostNetwork"] = True
    spec["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    del spec["securityContext"]["seccompProfile"]
    container = spec["containers"][0]
    container["securityContext"] = {"capabilities": {"add": ["SYS_ADMIN"]}, "runAsUser": 0}
    container["ports"][0]["hostPort"] = 5000
    context = {"privileged": True, "runAsNonRoot": False, "seccompProfile": {"type": "Localhost"}}
    spec["initContainers"] = [{"name": "init", "securityContext": context}]
    sidecar = {"securityContext": {"allowPrivilegeEscalation": False}}  # as autoscalerOptions
    assert restricted_violations(spec, [sidecar]) == [
        "hostNetwork",
        "volume host: hostPath",
        "init: privileged",
        "init: allowPrivilegeEscalation is not false",
        "init: capabilities not dropped",
        "init: may run as root",
        "mlflow: host port",
        "mlflow: allowPrivilegeEscalation is not false",
        "mlflow: capabilities not dropped",
        "mlflow: capabilities added",
        "mlflow: runs as uid 0",
        "mlflow: no seccomp profile",
        "autoscaler: capabilities not dropped",
        "autoscaler: no seccomp profile",
    ]


def test_ray_pods_admit_this_namespace_and_the_operator_on_the_dashboard_only():
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in of_kind("NetworkPolicy")}
    ray = policies["ray-pods-ingress"]
    assert ray["podSelector"] == {
        "matchExpressions": [{"key": "ray.io/node-type", "operator": "Exists"}]
    }
    assert ray["policyTypes"] == ["Ingress"]
    same_namespace, operator = ray["ingress"]
    assert same_namespace == {"from": [{"podSelector": {}}]}
    operator_pods = {"matchLabels": {"app.kubernetes.io/name": "kuberay-operator"}}
    # only the namespace the README's Helm install puts the operator in (`default` unless the
    # command names one), not any namespace
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    (install,) = re.findall(r"^helm install kuberay-operator .*$", readme, re.M)
    named = re.search(r"(?:--namespace[= ]|-n )(\S+)", install)
    operator_namespace = {
        "matchLabels": {"kubernetes.io/metadata.name": named[1] if named else "default"}
    }
    assert operator["from"] == [
        {"namespaceSelector": operator_namespace, "podSelector": operator_pods}
    ]
    assert operator["ports"] == [{"protocol": "TCP", "port": 8265}]
    mlflow = policies["mlflow-same-namespace"]
    assert [rule["from"] for rule in mlflow["ingress"]] == [[{"podSelector": {}}]]


def test_images_and_ray_versions_match_the_dockerfile():
    version = PYPROJECT["project"]["version"]
    ray_version = dockerfile_args()["RAY_VERSION"]
    for where, doc in manifests():
        cluster = ray_cluster_spec(doc)
        if cluster is not None:
            assert cluster["rayVersion"] == ray_version, where
            assert cluster["authOptions"]["mode"] == "token", where
    for where, spec in pod_specs():
        for container in spec["containers"]:
            assert re.fullmatch(rf"ot-ray:{re.escape(version)}-(gpu|cpu)", container["image"]), (
                where
            )


def test_project_image_tags_are_pulled_again_and_shared_volumes_not_re_owned():
    """The README reuses a tag (`ot-ray:<version>-gpu`) across builds, so every container of the
    project image pulls it at each start (IfNotPresent would keep a node's stale copy), the
    autoscaler sidecar (the head's image) included; and an fsGroup re-owns a volume only when its
    root does not already belong to the group (not every file of the 500Gi volume each start)."""
    containers = 0
    for where, spec in pod_specs():
        for container in spec["containers"]:
            assert container.get("imagePullPolicy") == "Always", f"{where}: {container['name']}"
            containers += 1
        context = spec["securityContext"]
        if "fsGroup" in context:
            assert context.get("fsGroupChangePolicy") == "OnRootMismatch", where
    assert containers >= 6
    for where, doc in manifests():
        cluster = ray_cluster_spec(doc)
        if cluster is not None and cluster.get("enableInTreeAutoscaling"):
            options = cluster["autoscalerOptions"]
            assert "image" in options or options.get("imagePullPolicy") == "Always", where


def test_ray_heads_advertise_no_gpus():
    """The head requests no GPU, but a CUDA image on a node whose default runtime is NVIDIA's
    would see the node's GPUs and Ray would advertise them to Tune."""
    heads = 0
    for where, doc in manifests():
        cluster = ray_cluster_spec(doc)
        if cluster is None:
            continue
        head = cluster["headGroupSpec"]
        assert head["rayStartParams"].get("num-gpus") == "0", where
        (container,) = head["template"]["spec"]["containers"]
        env = {v["name"]: v.get("value") for v in container.get("env", [])}
        if container["image"].endswith("-gpu"):
            assert env.get("NVIDIA_VISIBLE_DEVICES") == "void", where
        assert "nvidia.com/gpu" not in container["resources"].get("limits", {}), where
        heads += 1
    assert heads == 2


def test_gpu_workers_request_and_tolerate_gpus():
    groups = [
        group
        for _, doc in manifests()
        if (cluster := ray_cluster_spec(doc)) is not None
        for group in cluster["workerGroupSpecs"]
    ]
    assert len(groups) == 2
    for group in groups:
        spec = group["template"]["spec"]
        (container,) = spec["containers"]
        resources = container["resources"]
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]
        assert container["image"].endswith("-gpu")
        assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_the_jobs_config_exists_and_lives_on_the_shared_volume():
    (job,) = of_kind("RayJob")
    words = shlex.split(job["spec"]["entrypoint"])
    assert words[:2] == ["python", f"{IMAGE_HOME}/jobs/tune.py"]
    assert (REPO / "jobs" / "tune.py").is_file()
    config_path = Path(words[words.index("--config") + 1])
    local = REPO / config_path.relative_to(IMAGE_HOME)
    assert local.is_file(), config_path
    config = load_config(local)
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in head["containers"][0]["volumeMounts"]}
    claims = {v["name"] for v in head["volumes"] if "persistentVolumeClaim" in v}
    (mount,) = [path for name, path in mounts.items() if name in claims]
    for path in (config.tune.storage_path, config.train.output_dir, config.data.cache_dir):
        assert Path(path).is_relative_to(mount), path
    (tracking,) = of_kind("ConfigMap")
    assert config.tracking.uri == tracking["data"]["MLFLOW_TRACKING_URI"]
    # Workers still starting are not in the cluster's resources when the sweep begins, so the
    # config says how many trials run at once, and the worker group holds them.
    (gpu,) = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert config.tune.max_concurrent_trials is not None
    assert config.tune.max_concurrent_trials * config.train.num_workers <= gpu["maxReplicas"]
    assert config.train.use_gpu


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: p.name)
def test_paper_sweeps_fit_the_interactive_cluster(path):
    config = load_config(path)
    (cluster,) = of_kind("RayCluster")
    (gpu,) = cluster["spec"]["workerGroupSpecs"]
    assert config.tune.max_concurrent_trials is not None, "an autoscaled cluster starts empty"
    assert config.tune.max_concurrent_trials * config.train.num_workers <= gpu["maxReplicas"]


def test_mlflow_is_reachable_in_the_cluster_only_and_answers_its_service_name():
    (tracking,) = of_kind("ConfigMap")
    uri = urlparse(tracking["data"]["MLFLOW_TRACKING_URI"])
    (service,) = [s for s in of_kind("Service") if s["metadata"]["name"] == "mlflow"]
    assert service["spec"]["type"] == "ClusterIP"
    assert uri.hostname == f"mlflow.{service['metadata']['namespace']}.svc.cluster.local"
    assert uri.port == service["spec"]["ports"][0]["port"]
    assert not of_kind("Ingress")
    assert all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in of_kind("Service"))
    (deployment,) = of_kind("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    options = dict(a.removeprefix("--").split("=", 1) for a in container["command"] if "=" in a)
    assert f"{uri.hostname}:{uri.port}" in options["allowed-hosts"].split(",")
    assert options["backend-store-uri"].startswith("sqlite:////mlflow/")
    # SQLite takes one writer: more server processes fail with "database is locked"
    assert options.get("workers") == "1"
    assert deployment["spec"]["replicas"] == 1
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == "/mlflow"


# ------------------------------------------------------------------------------ paper configs


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: p.name)
def test_paper_configs_name_only_hub_ids_known_to_exist(path):
    known = yaml.safe_load(KNOWN_IDS.read_text(encoding="utf-8"))
    config = load_config(path)
    assert config.model.name_or_path in known["models"]
    hub_sources = 0
    for spec, lang in config_sources(config):
        if spec.hub is None:
            continue
        where = {"root": config.data.root, "lang": lang, "pivot": config.data.pivot}
        dataset = known["datasets"].get(spec.hub)
        assert dataset is not None, f"{spec.hub} is not a known Hub dataset"
        hub_config = fill(spec.hub_config, **where)
        assert hub_config in dataset["configs"], f"{spec.hub} has no config {hub_config!r}"
        assert spec.split.split("[")[0] in dataset["splits"], f"{spec.hub}: {spec.split}"
        hub_sources += 1
    assert hub_sources >= 20


def test_paper_mbert_is_the_papers_setting():
    config = load_config(REPO / "configs" / "paper_mbert.yaml")
    assert config.model.name_or_path == "google-bert/bert-base-multilingual-cased"
    assert config.data.languages == ["bg", "de", "el", "es", "fr"]
    assert len(config.data.all_eval_languages) == 15  # XNLI's languages
    assert config.data.pairs_per_language == 250_000
    align = config.alignment
    assert (align.method, align.layers, align.pooling) == ("wordot", [-1], "last")
    assert (align.ot.epsilon, align.ot.cost, align.ot.debias, align.ot.tau) == (
        0.0025,
        "sqeuclidean",
        True,
        None,
    )
    assert (align.reg_lambda, align.lr, align.epochs) == (1.0, 5e-5, 1)
    assert (align.batch_size, align.grad_accum) == (24, 2)
    xnli, xquad = config.task.xnli, config.task.xquad
    assert (xnli.lr, xnli.epochs, xnli.batch_size, xnli.max_length) == (2e-5, 5, 32, 128)
    assert (xquad.lr, xquad.epochs, xquad.batch_size, xquad.max_length) == (3e-5, 3, 32, 384)
    assert len(config.data.xquad.test.languages) == 11  # XQuAD's languages
    points = config.tune.points_to_evaluate.values()
    assert sorted((p["alignment.method"], p["train.seed"]) for p in points) == [
        (method, seed) for method in ("none", "wordot") for seed in (0, 1, 2)
    ]
    assert config.tune.num_samples == len(points)
    assert all("/test/" not in metric for metric in config.tune.objective)


def test_largewordot_aligns_fourteen_pairs_from_their_corpora():
    config = load_config(REPO / "configs" / "paper_largewordot.yaml")
    assert len(config.data.languages) == 14
    sources = {lang: config.data.parallel.train_sources(lang) for lang in config.data.languages}
    assert all(sources.values())
    assert [s.hub for s in sources["de"]] == ["Helsinki-NLP/europarl"]
    assert [s.hub for s in sources["ar"]] == ["Helsinki-NLP/multiun"]
    assert len(sources["sw"]) == 2  # Tanzil + GlobalVoices


def test_the_paper_search_starts_from_the_papers_point():
    config = load_config(REPO / "configs" / "search_paper.yaml")
    paper = config.tune.points_to_evaluate["paper"]
    base = load_config(REPO / "configs" / "paper_mbert.yaml")
    assert paper["alignment.ot.epsilon"] == base.alignment.ot.epsilon
    assert paper["alignment.reg_lambda"] == base.alignment.reg_lambda
    assert paper["alignment.lr"] == base.alignment.lr
    assert config.tune.scheduler.name == "asha"
