"""Providers describe themselves: the plan layer assembles its schemas from the kinds'
declarations (cloudinitd/kinds/) and names no kind itself."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from cloudinitd import kinds
from cloudinitd.cloudspec import PROVIDER_SCHEMAS, validate_cloud
from cloudinitd.errors import PlanErrors
from cloudinitd.kinds.base import Declaration, text
from cloudinitd.plan.loader import load_plan
from cloudinitd.plan.schema import (
    PLAN_SCHEMA,
    SERVICE_PROPERTIES,
    plan_schema,
    validate_plan_data,
)
from cloudinitd.plan.yamlpos import load_yaml
from cloudinitd.providers import KINDS

ROOT = Path(__file__).resolve().parents[1] / "cloudinitd"
# Every layer but the providers and the kinds' own declarations: they ask the
# declarations for a capability (existing hosts, image builds, an IaaS API) or a list.
GENERIC = sorted(p for p in ROOT.rglob("*.py")
                 if p.relative_to(ROOT).parts[0] not in ("providers", "kinds"))
# Keys a plan itself may hold (the `local: true` service key is not the `local` kind).
_AUTOSCALE = SERVICE_PROPERTIES["autoscale"]["properties"]
PLAN_KEYS = set(SERVICE_PROPERTIES) | set(_AUTOSCALE) | set(PLAN_SCHEMA["properties"])


def _names_a_key(node: ast.Constant, parent: ast.AST) -> bool:
    """`"local"` written as the plan key: its schema, `.get("local")`, `"local" in`, a key set,
    `out["local"] = True`, and the folder its steps run in (`run_dir / "local"`)."""
    if isinstance(parent, ast.Subscript):
        return parent.slice is node
    if isinstance(parent, ast.BinOp):
        return isinstance(parent.op, ast.Div) and parent.right is node
    if isinstance(parent, ast.Dict):  # `"local": {"type": "boolean", ...}`
        return any(k is node and isinstance(v, ast.Dict) and any(
            isinstance(x, ast.Constant) and x.value == "type" for x in v.keys)
            for k, v in zip(parent.keys, parent.values, strict=True))
    if isinstance(parent, ast.Call):  # v.get("local"), entry.key_line("local"), at("local")
        func = parent.func
        reads = (isinstance(func, ast.Attribute) and func.attr in ("get", "key_line")
                 or isinstance(func, ast.Name) and func.id == "at")
        return reads and parent.args[0] is node
    if isinstance(parent, ast.Compare):
        return parent.left is node
    return isinstance(parent, ast.Set)


def kind_literals(path: Path, root: Path = ROOT.parent) -> list[str]:
    """`file:line: 'kind'` for each string constant that names a provider kind."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and node.value in KINDS):
            continue
        if node.value in PLAN_KEYS and _names_a_key(node, parents[node]):
            continue
        found.append((node.lineno, node.col_offset, node.value))
    return [f"{path.relative_to(root)}:{line}: {kind!r}" for line, _, kind in sorted(found)]


def test_nothing_outside_the_providers_and_the_declarations_names_a_provider_kind():
    names = {p.relative_to(ROOT).as_posix() for p in GENERIC}
    assert {"plan/loader.py", "engine/launcher.py", "cli/launch_vm.py", "api/launchvm.py",
            "service/groups.py", "importer/convert.py", "placeholders.py"} <= names
    assert [hit for path in GENERIC for hit in kind_literals(path)] == []


def test_the_scan_finds_a_kind_named_in_code(tmp_path):
    # The scan itself: a cloud default or a kind table is caught, the `local:` key is not.
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent("""\
        CLOUDS = {"local": "local"}
        schema = {"local": {"type": "boolean"}, "ec2": {}, "local": entry("local", {})}
        cloud = v.get("cloud", "qemu")
        is_local = v.get("local") is True
        if kind == "static":
            pass
        out["local"] = True
        folder = run_dir / "local"
        where = "local" / run_dir
        out["qemu"] = "x"
    """))
    assert kind_literals(probe, tmp_path) == [
        "probe.py:1: 'local'", "probe.py:1: 'local'", "probe.py:2: 'ec2'", "probe.py:2: 'local'",
        "probe.py:2: 'local'", "probe.py:3: 'qemu'", "probe.py:5: 'static'",
        "probe.py:9: 'local'", "probe.py:10: 'qemu'"]


def test_every_provider_kind_is_declared_once_with_its_docs():
    assert list(kinds.BUILTIN) == list(PROVIDER_SCHEMAS)
    assert set(kinds.BUILTIN) == set(KINDS)
    for name, kind in KINDS.items():
        assert kind.doc and kind.doc == kinds.BUILTIN[name].doc
    # `cloud: local` and `cloud: qemu` need no entry; a service naming no cloud uses local.
    assert kinds.implicit_clouds(kinds.BUILTIN) == {"local": "local", "qemu": "qemu"}
    assert kinds.default_cloud(kinds.BUILTIN) == "local"
    assert set(kinds.service_options(kinds.BUILTIN)) <= set(SERVICE_PROPERTIES)


PLUGIN = Declaration(
    kind="plugtest",
    doc="a plug-in kind, for this test",
    cloud_options={"zone": text("a zone name")},
    service_options={"flavours": {"x-expect": "a flavour or a list of them",
                                  "oneOf": [{"type": "string"},
                                            {"type": "array", "items": {"type": "string"}}]}},
    list_options=("flavours",),
    implicit_cloud=True,
)


@pytest.fixture
def plugin():
    kinds.register(PLUGIN)
    yield PLUGIN
    kinds.unregister(PLUGIN.kind)


def _plan(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "plan.yml"
    path.write_text(textwrap.dedent(body))
    return path


def test_a_registered_kind_s_options_join_the_assembled_schema(plugin, tmp_path):
    schema = plan_schema(kinds.declared())
    service = schema["properties"]["services"]["additionalProperties"]["properties"]
    assert service["flavours"] == PLUGIN.service_options["flavours"]
    assert schema["properties"]["defaults"]["properties"] is service
    assert "flavours" not in SERVICE_PROPERTIES  # the built-in schema (`cloudinitd schema`)
    plan = load_plan(_plan(tmp_path, """\
        clouds:
          z: {provider: plugtest, zone: north}
        services:
          a: {cloud: plugtest, flavours: big}
          b: {cloud: z, flavours: [big, small]}
    """))
    assert plan.clouds["plugtest"].provider == "plugtest"  # an implicit cloud, no entry
    assert plan.clouds["z"].options == {"zone": "north"}
    assert plan.services["a"].options == {"flavours": ["big"]}  # one string: a list of one
    assert plan.services["b"].options == {"flavours": ["big", "small"]}
    _, errors = validate_cloud("z", {"provider": "plugtest", "zon": "x"}, "c.yml", 3)
    assert [str(e) for e in errors] == ["c.yml:3: cloud 'z': unknown key 'zon'"
                                        " (did you mean 'zone'?)"]


def test_without_the_registration_the_kind_and_its_options_are_refused(tmp_path):
    data = load_yaml("services:\n  a: {flavours: big}\n", "p.yml")
    [error] = validate_plan_data(data, "p.yml")
    assert str(error).startswith("p.yml:2: unknown key 'flavours' in services.a (known: after,")
    with pytest.raises(PlanErrors, match="unknown cloud 'plugtest'"):
        load_plan(_plan(tmp_path, "services:\n  a: {cloud: plugtest}\n"))
    _, errors = validate_cloud("z", {"provider": "plugtest"}, "c.yml", 3)
    assert "unknown provider 'plugtest'" in str(errors[0])


def test_a_registered_kind_s_service_options_are_launch_only(plugin, tmp_path):
    # LAUNCH_ONLY follows the declarations: a plug-in's own service key is refused on a
    # service on existing hosts, and a default of it skips such services.
    with pytest.raises(PlanErrors) as raised:
        load_plan(_plan(tmp_path, """\
            services:
              a: {host: 192.0.2.1, flavours: big}
              b: {hosts: [192.0.2.2], flavours: big}
        """))
    assert [line.split(": ", 1)[1] for line in str(raised.value).splitlines()] == [
        "service 'a': 'flavours' does not apply to a service on an existing host"
        " (host: 192.0.2.1)",
        "service 'b': 'flavours' does not apply to a service on existing hosts (hosts:)"]
    plan = load_plan(_plan(tmp_path, """\
        defaults: {flavours: big}
        services:
          a: {cloud: plugtest}
          b: {host: 192.0.2.1}
    """))
    assert plan.services["a"].options == {"flavours": ["big"]}
    assert plan.services["b"].options == {}


def test_the_capabilities_the_kinds_declare_match_their_providers():
    from cloudinitd.providers import provider_class
    from cloudinitd.providers.base import Provider

    assert kinds.HOSTS == "static"
    assert kinds.image_builders(kinds.BUILTIN) == ["local", "qemu"]
    assert kinds.iaas_kind(kinds.BUILTIN) == "ec2"
    ec2 = kinds.BUILTIN["ec2"]
    assert {ec2.image_map, ec2.size_map, "key_name"} <= set(ec2.cloud_options)
    for name in KINDS:
        builds = provider_class(name).build_image is not Provider.build_image
        assert builds == kinds.BUILTIN[name].builds_images, name


def test_the_command_line_offers_the_kinds_the_declarations_list():
    from click.testing import CliRunner

    from cloudinitd.cli.launch_vm import launch_vm
    from cloudinitd.cli.main import cli

    build = CliRunner().invoke(cli, ["image", "build", "--help"]).output
    assert "[local|qemu]" in build and "[default: local]" in build
    launch = CliRunner().invoke(launch_vm, ["--help"]).output
    assert "[local|qemu]" in launch
