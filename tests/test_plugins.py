"""Worker plugins: registration rules, discovery through real entry points, control, isolation.

Plugins here are real distributions: a ``*.dist-info`` folder (METADATA + entry_points.txt)
and a package on ``sys.path``, found by ``importlib.metadata`` exactly as an installed
wheel would be. (The installed-package round trip is in test_plugin_package.py.)
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tandem.graphs import Runtime, TandemConfig, load_config
from tandem.graphs.testing import check_worker
from tandem.workers import PluginError, WorkerSpec, discover, register
from tandem.workers.builtin import specs as builtin_specs
from tandem.workers.plugins import PluginSettings

SPEC_SOURCE = """
from pathlib import Path
from tandem.workers import WorkerSpec

HERE = Path(__file__).parent

def specs():
    return [WorkerSpec(
        name={name!r},
        description="Ocean tides, currents and lighthouses of the Velorian coast.",
        examples=("When is high tide at Saltmere?",),
        model="ollama:qwen2.5:0.5b",
        knowledge=(HERE / "corpus",),
    )]
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh site directory on sys.path; modules imported from it are forgotten afterwards."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    before = set(sys.modules)
    yield root
    for name in set(sys.modules) - before:
        if name.startswith("plug_"):
            del sys.modules[name]


def make_dist(
    site: Path,
    dist: str,
    *,
    version: str = "1.0.0",
    eps: dict[str, str],
    files: dict[str, str],
) -> None:
    """Write an 'installed' distribution: its package files and its dist-info."""
    for rel, text in files.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = ["[tandem.workers]", *(f"{k} = {v}" for k, v in eps.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def ocean(site: Path, dist: str = "tandem-ocean", *, module: str, worker: str = "ocean") -> None:
    make_dist(
        site,
        dist,
        version="1.2.0",
        eps={worker: f"{module}:specs"},
        files={
            f"{module}/__init__.py": SPEC_SOURCE.format(name=worker),
            f"{module}/corpus/tides.md": "# Tides\nHigh tide at Saltmere is at 06:10 and 18:35.\n",
        },
    )


def spec(**over: Any) -> WorkerSpec:
    data: dict[str, Any] = {"name": "ocean", "description": "Tides and currents."}
    return WorkerSpec(**{**data, **over})


# -- register: the one validation path ----------------------------------------------------


def test_register_accepts_a_spec_a_list_a_mapping_or_a_factory() -> None:
    one = spec()
    assert [s.name for s in register(one, origin="x 1")] == ["ocean"]
    assert [s.name for s in register([one, spec(name="reef")], origin="x 1")] == ["ocean", "reef"]
    assert register({"name": "ocean", "description": "d"}, origin="x 1")[0].name == "ocean"
    made = register(lambda: (one,), origin="x 1")
    assert made[0].origin == "x 1"


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"name": "Ocean", "description": "d"}, "worker 'Ocean': invalid name: 'Ocean' is not"),
        (
            {"name": "ocean", "description": "d", "model": "gpt-4"},
            "worker 'ocean': invalid model: 'gpt-4' is not a model reference",
        ),
        ({"name": "ocean", "description": " "}, "non-empty description"),
        ("ocean", "expected a WorkerSpec, a list of them or a factory returning them, got str"),
        ([spec(), spec()], "worker 'ocean' is registered twice"),
        ([spec(), 3], "expected a WorkerSpec, got int"),
    ],
)
def test_register_rejects_invalid_specs_naming_origin_and_problem(obj: Any, message: str) -> None:
    with pytest.raises(PluginError) as info:
        register(obj, origin="tandem-ocean 1.2.0")
    assert str(info.value).startswith("tandem-ocean 1.2.0: ")
    assert message in str(info.value)


def test_register_reports_a_failing_factory() -> None:
    def factory() -> list[WorkerSpec]:
        raise KeyError("corpus")

    with pytest.raises(PluginError, match=r"the factory raised KeyError: 'corpus'"):
        register(factory, origin="p 1")


def test_knowledge_must_ship_inside_the_plugin_package(tmp_path: Path) -> None:
    package = tmp_path / "plug"
    (package / "corpus").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    # Relative paths resolve against the entry point's module directory.
    (ok,) = register(
        spec(knowledge=(Path("corpus"),)), origin="p 1", package_root=package, base_dir=package
    )
    assert ok.knowledge == ((package / "corpus").resolve(),)
    with pytest.raises(PluginError, match="is outside the plugin's package"):
        register(spec(knowledge=(outside,)), origin="p 1", package_root=package)
    with pytest.raises(PluginError, match=r"\.\./elsewhere is outside"):
        register(spec(knowledge=(Path("../elsewhere"),)), origin="p 1", package_root=package)
    with pytest.raises(PluginError, match=r"does not exist; is it listed in .*package-data"):
        register(spec(knowledge=(package / "missing",)), origin="p 1", package_root=package)


# -- discovery through real entry points ------------------------------------------------


def test_an_installed_plugin_is_discovered_with_its_distribution_and_version(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ocean(site, module="plug_ocean_a")
    monkeypatch.delenv("TANDEM_PLUGINS")
    report = discover()
    names = [s.name for s in report.specs]
    assert names[:3] == ["tenancy", "finance", "health"]  # built-ins, same path, first
    assert "ocean" in names and not report.errors
    found = next(s for s in report.specs if s.name == "ocean")
    assert found.origin == "tandem-ocean 1.2.0"
    assert found.knowledge == ((site / "plug_ocean_a" / "corpus").resolve(),)
    assert {s.origin for s in report.specs if s.name != "ocean"} == {"builtin"}


@pytest.mark.parametrize(
    ("allow", "expected"),
    [
        (None, {"tenancy", "finance", "health", "ocean", "reef"}),
        ("", set()),
        ("ocean", {"ocean"}),  # an entry-point name
        ("tandem-reef", {"reef"}),  # a distribution name
        ("builtin, Tandem_Reef", {"tenancy", "finance", "health", "reef"}),  # normalised
    ],
)
def test_tandem_plugins_is_an_allowlist(
    site: Path, monkeypatch: pytest.MonkeyPatch, allow: str | None, expected: set[str]
) -> None:
    ocean(site, module="plug_ocean_b")
    ocean(site, "tandem-reef", module="plug_reef_b", worker="reef")
    if allow is None:
        monkeypatch.delenv("TANDEM_PLUGINS")
    else:
        monkeypatch.setenv("TANDEM_PLUGINS", allow)
    report = discover()
    assert {s.name for s in report.specs} == expected
    assert not report.errors


def test_a_broken_or_invalid_plugin_is_reported_and_skipped_while_others_work(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ocean(site, module="plug_ocean_c")
    make_dist(
        site,
        "tandem-broken",
        version="0.3",
        eps={"broken": "plug_broken_c:specs"},
        files={"plug_broken_c/__init__.py": "import plug_not_installed_anywhere\n"},
    )
    make_dist(
        site,
        "tandem-bad",
        version="2.0",
        eps={"bad": "plug_bad_c:specs"},
        files={
            "plug_bad_c/__init__.py": """
                def specs():
                    return [{"name": "bad", "description": "x", "model": "gpt4"}]
            """
        },
    )
    make_dist(
        site,
        "tandem-stray",
        version="0.1",
        eps={"stray": "plug_stray_c:specs"},
        files={
            "plug_stray_c/__init__.py": """
                def specs():
                    return {"name": "stray", "description": "x", "knowledge": ["/etc"]}
            """
        },
    )
    monkeypatch.setenv("TANDEM_PLUGINS", "ocean,broken,bad,stray")
    report = discover()
    assert [s.name for s in report.specs] == ["ocean"]
    assert report.errors == [
        "plugin 'bad' from tandem-bad 2.0 skipped: worker 'bad': invalid model: 'gpt4' is not "
        "a model reference; expected 'ollama:<model>' (e.g. 'ollama:qwen2.5:1.5b') or "
        "'embedded:<name>' (e.g. 'embedded:qwen2.5-coder-0.5b')",
        "plugin 'broken' from tandem-broken 0.3 skipped: cannot import plug_broken_c:specs: "
        "ModuleNotFoundError: No module named 'plug_not_installed_anywhere'",
        "plugin 'stray' from tandem-stray 0.1 skipped: worker 'stray': knowledge path /etc is "
        f"outside the plugin's package ({(site / 'plug_stray_c').resolve()}); ship the corpus "
        "as package data",
    ]


def test_two_distributions_with_the_same_worker_name_is_an_error_naming_both(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ocean(site, module="plug_ocean_d")
    ocean(site, "tandem-sea", module="plug_sea_d", worker="ocean")
    ocean(site, "tandem-reef", module="plug_reef_d", worker="reef")
    monkeypatch.setenv("TANDEM_PLUGINS", "tandem-ocean,tandem-sea,tandem-reef")
    report = discover()
    assert [s.name for s in report.specs] == ["reef"]
    (error,) = report.errors
    assert error.startswith(
        "worker 'ocean' is registered by both tandem-ocean 1.2.0 and tandem-sea 1.2.0; "
        "neither is loaded"
    )
    # Leaving one out resolves it.
    monkeypatch.setenv("TANDEM_PLUGINS", "tandem-sea,tandem-reef")
    report = discover()
    assert [(s.name, s.origin) for s in report.specs] == [
        ("ocean", "tandem-sea 1.2.0"),
        ("reef", "tandem-reef 1.2.0"),
    ]


def test_config_disables_workers_and_overrides_models(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ocean(site, module="plug_ocean_e")
    ocean(site, "tandem-reef", module="plug_reef_e", worker="reef")
    monkeypatch.delenv("TANDEM_PLUGINS")
    settings = PluginSettings.model_validate(
        {
            "disabled": ["tandem-reef", "finance"],
            "workers": {
                "ocean": {"model": "embedded:qwen2.5-coder-0.5b"},
                "health": {"enabled": False},
                "tenancy": {"model": "ollama:llama3.2:3b"},
                "weather": {"model": "ollama:x"},
            },
        }
    )
    report = discover(settings=settings)
    assert {s.name: s.model for s in report.specs} == {
        "tenancy": "ollama:llama3.2:3b",
        "ocean": "embedded:qwen2.5-coder-0.5b",
    }
    assert sorted(report.disabled) == ["finance", "health", "reef"]
    assert report.errors == ["[plugins.workers.weather]: no installed worker named 'weather'"]


def test_plugins_section_in_tandem_toml_and_the_env_allowlist_coexist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TANDEM_PLUGINS", "maritime,builtin")  # a list of names, not [plugins]
    file = tmp_path / "tandem.toml"
    file.write_text('[plugins]\ndisabled = ["health"]\n[plugins.workers.maritime]\nmodel = "x"\n')
    with pytest.raises(Exception, match=r"plugins\.workers\.maritime\.model: 'x' is not"):
        load_config(file)
    file.write_text(
        '[plugins]\ndisabled = ["health"]\n'
        '[plugins.workers.maritime]\nmodel = "embedded:qwen2.5-coder-0.5b"\nenabled = false\n'
    )
    config = load_config(file)
    assert config.plugins.disabled == ["health"]
    assert config.plugins.workers["maritime"].enabled is False


def test_the_runtime_takes_plugin_workers_with_config_overrides(
    site: Path, monkeypatch: pytest.MonkeyPatch, make_config: Callable[..., TandemConfig]
) -> None:
    ocean(site, module="plug_ocean_f")
    ocean(site, "tandem-reef", module="plug_reef_f", worker="reef")
    monkeypatch.setenv("TANDEM_PLUGINS", "ocean,reef")
    config = make_config(
        plugins={"workers": {"ocean": {"model": "ollama:qwen2.5:1.5b"}, "reef": {"enabled": False}}}
    )
    rt = Runtime(config)
    assert list(rt.specs) == ["tenancy", "finance", "health", "ocean"]
    assert rt.specs["ocean"].model == "ollama:qwen2.5:1.5b"
    assert rt.specs["ocean"].origin == "tandem-ocean 1.2.0"
    assert rt.workers["ocean"].backend.ref == "ollama:qwen2.5:1.5b"
    assert rt.plugin_report.disabled == ["reef"]


# -- check_worker: the conformance helper for plugin authors ----------------------------


def test_check_worker_runs_retrieval_answer_and_validation() -> None:
    tenancy = builtin_specs()[0]
    report = check_worker(
        tenancy,
        questions=["How quickly does Brightwater Lettings return a deposit?"],
        competitors=builtin_specs(),
    )
    assert report.worker == "tenancy" and report.files == 15 and report.chunks >= 15
    (q,) = report.questions
    assert q.routed_to == "tenancy"
    assert q.citations and q.citations[0].split("#")[0] in q.passages
    assert q.answer


def test_check_worker_names_the_stage_that_failed(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "tides.md").write_text("# Tides\nHigh tide at Saltmere is at 06:10.\n")
    ocean_spec = spec(knowledge=(corpus,), examples=("When is high tide at Saltmere?",))
    assert check_worker(ocean_spec).questions[0].citations == ["tides.md#0"]

    with pytest.raises(AssertionError, match=r"failed at setup: the spec has no examples"):
        check_worker(spec(knowledge=(corpus,)))
    with pytest.raises(AssertionError, match=r"failed at setup: .*declares no knowledge"):
        check_worker(spec(examples=("q?",)))
    with pytest.raises(AssertionError, match=r"failed at validation: 'Who wrote Hamlet\?'"):
        check_worker(ocean_spec, questions=["Who wrote Hamlet?"])
    with pytest.raises(AssertionError, match=r"failed at routing: .* scores highest for 'health'"):
        check_worker(
            ocean_spec,
            questions=["Can I take ibuprofen with paracetamol?"],
            competitors=builtin_specs(),
        )
    (corpus / "tides.md").unlink()
    with pytest.raises(AssertionError, match=r"failed at ingestion: no \.md/\.txt files"):
        check_worker(ocean_spec)


def test_every_cli_command_warns_about_a_skipped_plugin_and_carries_on(
    site: Path, monkeypatch: pytest.MonkeyPatch, fake_ollama: Any, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from tandem.agents.shell.cli import app

    ocean(site, module="plug_ocean_g")
    make_dist(
        site,
        "tandem-broken",
        eps={"broken": "plug_broken_g:specs"},
        files={"plug_broken_g/__init__.py": "def specs():\n    raise OSError('corpus index')\n"},
    )
    monkeypatch.setenv("TANDEM_PLUGINS", "ocean,broken")
    config = tmp_path / "tandem.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[ollama]\nhost = "{fake_ollama.url}"\n'
        '[router]\nembed_model = "ollama:nomic-embed-text"\n'
        # A remote supervisor that is never called: no bundled model gets prepared.
        '[supervisor]\nmodel = "openai/fake-large"\napi_base = "http://127.0.0.1:9/v1"\n'
    )
    doc = tmp_path / "currents.md"
    doc.write_text("# Currents\nThe Saltmere current runs north at 2 knots.\n")
    result = CliRunner().invoke(app, ["ingest", "ocean", str(doc), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "1 files · 1 chunks added" in result.stdout
    assert " ".join(result.stderr.split()).startswith(
        "warning: plugin 'broken' from tandem-broken 1.0.0 skipped: the factory raised "
        "OSError: corpus index"
    )


def test_workers_list_and_show_describe_a_plugin_worker(
    site: Path, monkeypatch: pytest.MonkeyPatch, fake_ollama: Any, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from tandem.agents.shell.cli import app

    ocean(site, module="plug_ocean_h")
    monkeypatch.setenv("TANDEM_PLUGINS", "builtin,ocean")
    config = tmp_path / "tandem.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[ollama]\nhost = "{fake_ollama.url}"\n'
        '[router]\nembed_model = "ollama:nomic-embed-text"\n'
        '[supervisor]\nmodel = "openai/fake-large"\napi_base = "http://127.0.0.1:9/v1"\n'
        '[plugins]\ndisabled = ["health"]\n'
    )
    runner = CliRunner(env={"COLUMNS": "200"})
    listed = runner.invoke(app, ["workers", "list", "--config", str(config)])
    assert listed.exit_code == 0, listed.output
    rows = {line.split("│")[1].strip(): line for line in listed.stdout.splitlines() if "│" in line}
    assert set(rows) == {"tenancy", "finance", "ocean"}  # health disabled by config
    assert "tandem-ocean 1.2.0" in rows["ocean"] and "ollama:qwen2.5:0.5b" in rows["ocean"]
    assert "0 *" in rows["ocean"]  # empty, with the footnote below the table
    assert "* empty: its knowledge is ingested on first use" in listed.stdout
    assert "builtin" in rows["tenancy"]
    assert "health: disabled by [plugins]" in listed.stderr

    shown = runner.invoke(app, ["workers", "show", "ocean", "--config", str(config)])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.stdout.split())
    assert "origin tandem-ocean 1.2.0" in text
    assert f"knowledge {(site / 'plug_ocean_h' / 'corpus').resolve()} (1 files)" in text
    assert "store empty (ingested on first use)" in text
    assert "examples • When is high tide at Saltmere?" in text

    missing = runner.invoke(app, ["workers", "show", "reef", "--config", str(config)])
    assert missing.exit_code == 1
    assert "error: no worker named 'reef'; known: tenancy, finance, ocean" in missing.stderr
