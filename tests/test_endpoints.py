import pytest

from tandem.agents.privacy.endpoints import (
    SELF_HOSTED_ENGINES,
    TrustedHosts,
    classify_endpoint,
    hosted_provider,
    parse_trusted_host,
)

ENV: dict[str, str] = {}


def c(model, api_base=None, **kw):
    kw.setdefault("env", ENV)
    return classify_endpoint(model, api_base, **kw)


@pytest.mark.parametrize("model", ["embedded/qwen2.5-coder-1.5b", "embedded:qwen2.5-coder-0.5b"])
def test_embedded_is_local(model):
    r = c(model)
    assert r.where == "local" and r.kind == "in-process" and "this process" in r.reason


@pytest.mark.parametrize(
    "base",
    [
        "http://127.0.0.1:4000/v1",
        "http://localhost:4000",
        "http://[::1]:4000",
        "http://127.0.0.2:1/",
        None,
    ],
)
@pytest.mark.parametrize(
    "model",
    [
        "openai/gpt-4o-mini",
        "anthropic/claude-3-5-haiku",
        "gemini/gemini-2.0-flash",
        "azure/gpt-4o",
        "bedrock/anthropic.claude-v2",
        "mistral/mistral-small",
        "groq/llama3-8b-8192",
        "deepseek/deepseek-chat",
        "together_ai/x",
        "vertex_ai/gemini-pro",
        "cohere/command-r",
        "gpt-4o-mini",
        "openrouter/x",
        "litellm_proxy/gpt-4o",
        "openai_like/x",
        "custom_openai/x",
    ],
)
def test_hosted_is_remote_whatever_api_base(model, base):
    r = c(model, base)
    assert r.where == "remote", r
    if base:
        assert "proxy or tunnel" in r.reason and "trusted_hosts" in r.reason


def test_bare_priced_name_is_hosted():
    assert hosted_provider("gpt-4o-mini") == "openai"
    assert c("gpt-4o-mini").kind == "hosted-api"
    assert hosted_provider("ollama/llama3") is None


def test_trusted_api_base_makes_openai_compatible_server_local():
    r = c("openai/local-llama", "http://127.0.0.1:8080/v1", trusted_hosts=["127.0.0.1:8080"])
    assert r.where == "local" and "trusted_hosts" in r.reason
    # another port on the same host is not covered by a host:port entry
    assert (
        c("openai/x", "http://127.0.0.1:4000/v1", trusted_hosts=["127.0.0.1:8080"]).where
        == "remote"
    )
    # a bare host entry trusts every port
    assert c("openai/x", "http://box.lan:4000/v1", trusted_hosts=["box.lan"]).where == "local"


@pytest.mark.parametrize(
    "host",
    [
        "http://127.0.0.1:11434",
        "http://localhost:11434",
        "http://[::1]:11434",
        "127.0.0.1:11434",
        "http://LOCALHOST.:11434",
        "http://[::ffff:127.0.0.1]:11434",
    ],
)
def test_ollama_on_loopback_is_local(host):
    r = c("ollama:qwen2.5:1.5b", hosts=[host])
    assert r.where == "local" and "loopback" in r.reason


def test_ollama_default_host_and_env():
    assert c("ollama_chat/llama3").where == "local"
    assert c("ollama:qwen", env={"OLLAMA_HOST": "gpu-box.example.net:11434"}).where == "remote"
    assert c("ollama:qwen", env={"OLLAMA_HOST": "127.0.0.1:11434"}).where == "local"


def test_ollama_on_other_host_is_remote_unless_trusted():
    r = c("ollama:qwen2.5:1.5b", hosts=["http://gpu-box.example.net:11434"])
    assert (
        r.where == "remote"
        and "gpu-box.example.net:11434" in r.reason
        and "trusted_hosts" in r.reason
    )
    r = c(
        "ollama:qwen2.5:1.5b",
        hosts=["http://gpu-box.example.net:11434"],
        trusted_hosts=["gpu-box.example.net"],
    )
    assert r.where == "local"
    assert (
        c("ollama:q", hosts=["http://10.0.0.7:11434"], trusted_hosts=["10.0.0.0/24"]).where
        == "local"
    )
    assert (
        c("ollama:q", hosts=["http://10.0.1.7:11434"], trusted_hosts=["10.0.0.0/24"]).where
        == "remote"
    )


def test_pool_is_local_only_if_every_host_is():
    r = c("ollama:q", hosts=["http://127.0.0.1:11434", "http://gpu-box:11434"])
    assert r.where == "remote" and "gpu-box:11434" in r.reason


def test_ollama_cloud_model_is_remote():
    for m in [
        "ollama:gpt-oss:120b-cloud",
        "ollama_chat/deepseek-v3.1:671b-cloud",
        "ollama:kimi-k2:cloud",
    ]:
        r = c(m, hosts=["http://127.0.0.1:11434"])
        assert r.where == "remote" and "cloud" in r.reason


@pytest.mark.parametrize(
    "base",
    [
        "http://127.0.0.1@evil.example:11434",
        "http://evil.example\\@127.0.0.1",
        "http://127.0.0.1 .evil.example",
        "file:///tmp/sock",
        "http://",
    ],
)
def test_ambiguous_urls_fail_closed(base):
    assert c("ollama_chat/llama3", base).where == "remote"
    assert c("openai/x", base, trusted_hosts=["127.0.0.1"]).where == "remote"


def test_self_hosted_engines():
    assert c("hosted_vllm/m", "http://127.0.0.1:8000/v1").where == "local"
    assert c("hosted_vllm/m", "http://vllm.internal:8000/v1").where == "remote"
    assert c("hosted_vllm/m").where == "remote"  # no api_base: cannot tell
    assert c("lm_studio/m").where == "local"  # litellm's default is loopback
    assert c("lm_studio/m", env={"LM_STUDIO_API_BASE": "http://box:1234/v1"}).where == "remote"


def test_unknown_and_odd_models_are_remote():
    for m in ["nosuchprovider/foo", "foo", "meta-llama/Llama-3-8b", "vllm/x"]:
        r = c(m, "http://127.0.0.1:9/v1")
        assert r.where == "remote", m


def test_trusted_host_validation():
    for bad in ["", "http://u:p@h", "h/path", "300.1.1.1/99", "a b"]:
        with pytest.raises(ValueError):
            parse_trusted_host(bad)
    assert TrustedHosts(["GPU-Box.Example.NET."]).match("gpu-box.example.net", 11434)
    assert TrustedHosts(["http://gpu:11434"]).match("gpu", 11434)


@pytest.mark.slow  # imports litellm (seconds)
def test_static_lists_cover_litellm():
    """Every provider litellm knows is either self-hosted, hosted, or falls to 'remote'."""
    import litellm

    names = {str(getattr(p, "value", p)) for p in litellm.provider_list}
    assert set(SELF_HOSTED_ENGINES) <= names | {"ollama_chat"}
    for p in names - set(SELF_HOSTED_ENGINES):
        assert c(f"{p}/m", "http://127.0.0.1:1/v1").where == "remote", p
    # every provider litellm prices as an API is named as hosted (the reason says so)
    from tandem.agents.privacy.endpoints import priced_providers

    for p in priced_providers():
        assert c(f"{p}/m").kind == "hosted-api", p


@pytest.mark.integration  # a fresh interpreter
def test_no_litellm_import_on_classification():
    import subprocess
    import sys

    code = (
        "import sys; from tandem.agents.privacy.endpoints import classify_endpoint as c;"
        "c('gpt-4o-mini'); c('openai/x', 'http://127.0.0.1:1');"
        "assert 'litellm' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the runtime applies the rule to every endpoint ------------------------------------------


def _runtime(make_config, **over):
    from tandem.graphs import Runtime

    return Runtime(make_config(**over))


def test_the_runtime_shows_every_endpoint_and_why(make_config, fake_openai):
    rt = _runtime(make_config, privacy={"policy": "redact", "trusted_hosts": []})
    assert rt.endpoints["supervisor"].where == "remote"
    assert "proxy or tunnel" in rt.endpoints["supervisor"].reason
    assert rt.endpoints["worker tenancy"].where == "local"
    assert rt.endpoints["embeddings"].where == "local"
    trusted = _runtime(make_config)  # conftest trusts the fake's host:port
    assert trusted.supervisor.llm.where == "local"
    assert "trusted_hosts" in trusted.endpoints["supervisor"].reason


def test_a_remote_ollama_host_is_refused_unless_allowed_or_trusted(make_config):
    from tandem.workers.errors import ConfigError

    remote = {"host": "http://gpu-box.example.net:11434"}
    with pytest.raises(ConfigError, match=r"gpu-box\.example\.net:11434.*another machine"):
        _runtime(make_config, ollama=remote, privacy={"policy": "redact"})
    with pytest.raises(ConfigError, match="local_only"):
        _runtime(make_config, ollama=remote, privacy={"policy": "local_only"})
    rt = _runtime(make_config, ollama=remote, privacy={"policy": "allow"})
    assert rt.endpoints["worker tenancy"].where == "remote"
    assert rt.workers["tenancy"].backend.where == "remote"
    ok = _runtime(make_config, ollama=remote, privacy={"trusted_hosts": ["gpu-box.example.net"]})
    assert ok.endpoints["worker tenancy"].where == "local"


def test_a_remote_fallback_host_is_an_endpoint_too(make_config):
    from tandem.workers.errors import ConfigError

    with pytest.raises(ConfigError, match="fallback of worker tenancy"):
        _runtime(
            make_config,
            privacy={"policy": "redact"},
            reliability={"fallbacks": {"tenancy": {"host": "http://other-box:11434"}}},
        )


def test_egress_local_is_refused(make_config):
    from tandem.workers.errors import ConfigError

    with pytest.raises((ConfigError, ValueError), match="trusted_hosts"):
        _runtime(make_config, supervisor={"egress": "local"})


def test_a_local_only_worker_never_runs_on_a_remote_endpoint(make_config):
    from tandem.workers.errors import ConfigError

    from .conftest import demo_specs

    specs = [
        s.model_copy(update={"sensitivity": "local_only"}) if s.name == "health" else s
        for s in demo_specs()
    ]
    with pytest.raises(ConfigError, match="local_only worker"):
        _runtime(
            make_config,
            workers=specs,
            ollama={"host": "http://gpu-box.example.net:11434"},
            privacy={"policy": "allow"},  # even when everything else may leave as is
        )
