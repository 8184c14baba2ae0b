"""Where a model endpoint runs: one classification for the supervisor, workers and embeddings.

The rule (fails closed — anything not shown to be local is remote):

1. The embedded engine (``embedded/<name>``, ``embedded:<name>``) runs in this process:
   **local**.
2. A self-hosted engine — Ollama (``ollama:``, ``ollama/``, ``ollama_chat/``), vLLM
   (``hosted_vllm/``), llamafile, LM Studio, Xinference, oobabooga, Triton, Infinity, Docker
   Model Runner, Lemonade — is **local** only when every host it may be sent to is
   loopback (``127.0.0.0/8``, ``::1``, ``localhost``) or listed in ``[privacy]
   trusted_hosts``. An Ollama *cloud* model (``…-cloud``, ``…:cloud``) is forwarded by
   Ollama to ollama.com: **remote** wherever Ollama runs.
3. Every other model string — a hosted provider (``openai/``, ``anthropic/``, ``gemini/``,
   … or a bare name such as ``gpt-4o-mini`` that litellm prices as a hosted API) — is
   **remote whatever its api_base**: a loopback ``api_base`` is most often a LiteLLM proxy
   or an SSH tunnel to the provider. An OpenAI-compatible server that really runs here
   (a llama.cpp server, vLLM behind ``openai/``) counts as local only when its api_base's
   host is listed in ``[privacy] trusted_hosts`` — an explicit statement by the user.
4. Anything else — an unknown engine, no or an unparseable api_base — is **remote**.

``[[ollama.hosts]]`` entries are *not* trusted by being listed there: a GPU box on the
network is another machine. ``trusted_hosts`` entries are ``host``, ``host:port`` or an IP
network (``10.0.0.0/24``); a ``host`` entry trusts every port of it.

Every :class:`EndpointClass` carries a one-line reason, shown by ``tandem doctor`` and
the REPL banner.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tandem.agents.privacy.urls import parse_authority

__all__ = [
    "HOSTED_PROVIDERS",
    "SELF_HOSTED_ENGINES",
    "EndpointClass",
    "TrustedHosts",
    "classify_endpoint",
    "hosted_provider",
    "parse_trusted_host",
]

Where = Literal["local", "remote"]
Kind = Literal["in-process", "self-hosted", "hosted-api", "unknown"]

SELF_HOSTED_ENGINES: Mapping[str, str] = {
    "ollama": "Ollama",
    "ollama_chat": "Ollama",
    "hosted_vllm": "vLLM",
    "llamafile": "llamafile",
    "lm_studio": "LM Studio",
    "xinference": "Xinference",
    "oobabooga": "oobabooga",
    "triton": "Triton",
    "infinity": "Infinity",
    "docker_model_runner": "Docker Model Runner",
    "lemonade": "Lemonade",
}
"""litellm provider prefixes of engines people run on their own machines."""

_DEFAULT_BASES: Mapping[str, str] = {
    "ollama": "http://127.0.0.1:11434",
    "ollama_chat": "http://127.0.0.1:11434",
    "llamafile": "http://127.0.0.1:8080/v1",
    "lm_studio": "http://127.0.0.1:1234/v1",
}
"""Where litellm sends a self-hosted engine's requests when no api_base is given."""

_BASE_ENV: Mapping[str, str] = {
    "ollama": "OLLAMA_API_BASE",
    "ollama_chat": "OLLAMA_API_BASE",
    "hosted_vllm": "HOSTED_VLLM_API_BASE",
    "llamafile": "LLAMAFILE_API_BASE",
    "lm_studio": "LM_STUDIO_API_BASE",
    "xinference": "XINFERENCE_API_BASE",
}
"""Environment variables litellm reads for a self-hosted engine's endpoint."""

HOSTED_PROVIDERS: frozenset[str] = frozenset(
    {
        "openai", "text-completion-openai", "azure", "azure_ai", "azure_text", "anthropic",
        "anthropic_text", "gemini", "vertex_ai", "vertex_ai_beta", "bedrock", "bedrock_converse",
        "sagemaker", "sagemaker_chat", "mistral", "codestral", "groq", "cohere", "cohere_chat",
        "deepseek", "together_ai", "fireworks_ai", "perplexity", "openrouter", "xai",
        "deepinfra", "anyscale", "replicate", "huggingface", "ai21", "ai21_chat", "cerebras",
        "sambanova", "nvidia_nim", "databricks", "watsonx", "watsonx_text", "cloudflare",
        "voyage", "jina_ai", "dashscope", "moonshot", "novita", "nebius", "hyperbolic",
        "lambda_ai", "friendliai", "github", "github_copilot", "vercel_ai_gateway", "zai",
        "minimax", "volcengine", "baseten", "predibase", "nlp_cloud", "aleph_alpha",
        "palm", "clarifai", "snowflake", "oci", "meta_llama", "litellm_proxy", "custom_openai",
        "openai_like", "aiohttp_openai", "chatgpt", "featherless_ai", "nscale", "ovhcloud",
        "scaleway", "gradient_ai", "morph", "v0", "galadriel", "empower", "maritalk",
    }
)  # fmt: skip
"""Providers reached over the internet. ``openai_like``, ``custom_openai`` and
``litellm_proxy`` are here on purpose: they are how a proxy to a hosted API is written."""

_CLOUD_OLLAMA = re.compile(r"(?:[-:]cloud)$", re.I)
_PREFIX = re.compile(r"^([A-Za-z0-9_.\-]+)/(.+)$")


@dataclass(frozen=True)
class EndpointClass:
    """Whether calls to a model leave the machine, and why."""

    where: Where
    reason: str
    """One line for ``tandem doctor`` and the REPL banner."""
    model: str
    kind: Kind
    provider: str | None = None
    hosts: tuple[str, ...] = ()
    """The hosts calls may go to, as ``host[:port]`` (empty for in-process models)."""

    @property
    def local(self) -> bool:
        return self.where == "local"


@dataclass(frozen=True)
class _TrustedEntry:
    host: str | None = None
    port: int | None = None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    text: str = ""


def parse_trusted_host(entry: str) -> _TrustedEntry:
    """Validate one ``[privacy] trusted_hosts`` entry (``host``, ``host:port``, ``10.0.0.0/24``).

    Raises:
        ValueError: With the reason, for an entry that names no host.
    """
    text = entry.strip()
    if not text:
        raise ValueError("an empty trusted host")
    if "/" in text and "://" not in text:
        try:
            return _TrustedEntry(network=ipaddress.ip_network(text, strict=False), text=text)
        except ValueError:
            raise ValueError(f"'{entry}' is neither a host, host:port nor an IP network") from None
    rest = text.split("://", 1)[1] if "://" in text else text
    target = parse_authority(rest, special=True)
    if target is None or target.userinfo or re.search(r"[/?#\\]", rest.rstrip("/")):
        raise ValueError(
            f"'{entry}' is not a host; write 'gpu-box.example.net', 'gpu-box:11434' or "
            "'10.0.0.0/24'"
        )
    return _TrustedEntry(host=target.host.rstrip("."), port=target.port, text=text)


class TrustedHosts:
    """The hosts the user declared to be their own (``[privacy] trusted_hosts``)."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.entries = tuple(parse_trusted_host(e) for e in entries)

    def match(self, host: str, port: int | None) -> str | None:
        """The entry that trusts ``host:port``, or None."""
        bare = host.strip("[]").rstrip(".")
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
        try:
            ip = ipaddress.ip_address(bare)
        except ValueError:
            ip = None
        for e in self.entries:
            if e.network is not None:
                if ip is not None and ip.version == e.network.version and ip in e.network:
                    return e.text
                continue
            if (
                e.host is not None
                and e.host.strip("[]") == bare
                and (e.port is None or e.port == port)
            ):
                return e.text
        return None


def _is_loopback(host: str) -> bool:
    bare = host.strip("[]").rstrip(".")
    if bare == "localhost" or bare.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


@dataclass(frozen=True)
class _Host:
    url: str
    host: str | None
    port: int | None
    label: str
    problem: str = ""


def _split_url(url: str) -> _Host:
    """The host and port a client library would connect to for ``url``.

    Refuses (``host=None``) URLs whose reading differs between parsers — userinfo,
    backslashes, control characters — rather than guessing which one the client uses.
    """
    text = url.strip()
    if not text:
        return _Host(url, None, None, url, "empty URL")
    if (
        any(ord(c) < 0x21 or c == "\\" for c in text)
        or "@" in text.split("://", 1)[-1].split("/", 1)[0]
    ):
        return _Host(url, None, None, url, "the URL holds credentials, backslashes or spaces")
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*)://(.*)$", text)
    if m is None:
        rest, scheme = text, "http"
    else:
        scheme, rest = m.group(1).lower(), m.group(2)
    if scheme not in ("http", "https"):
        return _Host(url, None, None, url, f"unsupported scheme '{scheme}'")
    target = parse_authority(rest, special=True)
    if target is None:
        return _Host(url, None, None, url, "no valid host in the URL")
    port = target.port or (443 if scheme == "https" else 80)
    return _Host(url, target.host, port, f"{target.host}:{port}")


def _read_cost_map() -> dict[str, dict[str, object]]:
    """litellm's bundled price list, read as a file (importing litellm takes seconds)."""
    spec = importlib.util.find_spec("litellm")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for base in locations:
        path = Path(base) / "model_prices_and_context_window_backup.json"
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            return {k: v for k, v in data.items() if isinstance(v, dict)}
    return {}


_COST_MAP: dict[str, dict[str, object]] | None = None
_COST_LOCK = threading.Lock()


def _cost_map() -> dict[str, dict[str, object]]:
    global _COST_MAP
    with _COST_LOCK:
        if _COST_MAP is None:
            try:
                _COST_MAP = _read_cost_map()
            except (OSError, ValueError):
                _COST_MAP = {}
        return _COST_MAP


def hosted_provider(model: str) -> str | None:
    """The hosted provider litellm's price list names for ``model``, if it prices it.

    ``gpt-4o-mini`` → ``openai``; ``ollama/llama3`` → None (priced at zero: self-hosted).
    """
    entry = _cost_map().get(model)
    if entry is None:
        return None
    provider = str(entry.get("litellm_provider") or "")
    costs = [entry.get(k) for k in ("input_cost_per_token", "output_cost_per_token")]
    priced = any(isinstance(c, int | float) and c > 0 for c in costs)
    if not provider or provider in SELF_HOSTED_ENGINES or not priced:
        return None
    return provider


def priced_providers() -> frozenset[str]:
    """Providers litellm's price list charges for (hosted APIs), minus self-hosted engines."""
    found: set[str] = set()
    for entry in _cost_map().values():
        costs = [entry.get(k) for k in ("input_cost_per_token", "output_cost_per_token")]
        if any(isinstance(c, int | float) and c > 0 for c in costs):
            found.add(str(entry.get("litellm_provider") or ""))
    return frozenset(found - set(SELF_HOSTED_ENGINES) - {""})


def _trusted_or_loopback(h: _Host, trusted: TrustedHosts) -> str | None:
    """Why ``h`` counts as this machine, or None."""
    if h.host is None:
        return None
    if _is_loopback(h.host):
        return "loopback"
    entry = trusted.match(h.host, h.port)
    if entry is not None:
        return f"listed in [privacy] trusted_hosts ('{entry}')"
    return None


def classify_endpoint(
    model: str,
    api_base: str | None = None,
    *,
    hosts: Sequence[str] | None = None,
    trusted_hosts: Iterable[str] | TrustedHosts = (),
    env: Mapping[str, str] | None = None,
) -> EndpointClass:
    """Classify the endpoint serving ``model`` as local or remote (see the module doc).

    Args:
        model: A tandem model reference (``ollama:qwen2.5:1.5b``, ``embedded:<name>``) or a
            litellm model string (``openai/gpt-4o-mini``, ``ollama_chat/llama3``,
            ``embedded/<name>``).
        api_base: The endpoint override (``[supervisor] api_base``).
        hosts: For an Ollama worker or embedding model: every server it may be sent to
            (``[ollama] host`` and the ``[[ollama.hosts]]`` that serve it).
        trusted_hosts: ``[privacy] trusted_hosts``.
        env: The environment (``OLLAMA_HOST`` …); default ``os.environ``.
    """
    env = os.environ if env is None else env
    trusted = (
        trusted_hosts if isinstance(trusted_hosts, TrustedHosts) else TrustedHosts(trusted_hosts)
    )
    ref = model.strip()

    # 1. In-process.
    if ref.startswith(("embedded/", "embedded:")):
        return EndpointClass(
            "local", "the embedded engine runs inside this process", ref, "in-process", "embedded"
        )

    # tandem's own worker references: "ollama:<model>".
    provider: str | None
    name: str
    if ref.startswith("ollama:"):
        provider, name = "ollama", ref.removeprefix("ollama:")
    else:
        m = _PREFIX.match(ref)
        provider, name = (m.group(1).lower(), m.group(2)) if m else (None, ref)

    # 2. Self-hosted engines.
    if provider is not None and provider in SELF_HOSTED_ENGINES:
        engine = SELF_HOSTED_ENGINES[provider]
        if provider.startswith("ollama") and _CLOUD_OLLAMA.search(name):
            return EndpointClass(
                "remote",
                f"'{name}' is an Ollama cloud model: Ollama forwards it to ollama.com",
                ref,
                "hosted-api",
                provider,
            )
        urls: list[str]
        if hosts:
            urls = list(hosts)
        elif api_base:
            urls = [api_base]
        elif provider.startswith("ollama") and env.get("OLLAMA_HOST", "").strip():
            urls = [env["OLLAMA_HOST"].strip()]
        elif provider in _BASE_ENV and env.get(_BASE_ENV[provider], "").strip():
            urls = [env[_BASE_ENV[provider]].strip()]
        elif provider in _DEFAULT_BASES:
            urls = [_DEFAULT_BASES[provider]]
        else:
            return EndpointClass(
                "remote",
                f"{engine} with no api_base: cannot tell which machine serves it",
                ref,
                "self-hosted",
                provider,
            )
        parsed = [_split_url(u) for u in urls]
        labels = tuple(h.label for h in parsed)
        for h in parsed:
            if h.host is None:
                return EndpointClass(
                    "remote",
                    f"{engine} endpoint '{h.url}' cannot be placed ({h.problem})",
                    ref,
                    "self-hosted",
                    provider,
                    labels,
                )
            if _trusted_or_loopback(h, trusted) is None:
                return EndpointClass(
                    "remote",
                    f"{engine} at {h.label} is another machine (not loopback, not in "
                    "[privacy] trusted_hosts)",
                    ref,
                    "self-hosted",
                    provider,
                    labels,
                )
        why = sorted({_trusted_or_loopback(h, trusted) or "" for h in parsed})
        return EndpointClass(
            "local",
            f"{engine} at {', '.join(labels)} ({'; '.join(why)})",
            ref,
            "self-hosted",
            provider,
            labels,
        )

    # 3. Hosted providers (or anything else): remote, unless its api_base is trusted.
    hosted = (
        provider
        if provider in HOSTED_PROVIDERS or (provider and provider in priced_providers())
        else hosted_provider(ref)
    )
    if hosted is None and provider is None:
        hosted = hosted_provider(name)
    kind: Kind = "hosted-api" if hosted else "unknown"
    what = (
        f"'{hosted}' is a hosted API provider"
        if hosted
        else f"'{provider}' is not a known self-hosted engine"
        if provider
        else "no provider prefix and not a known self-hosted model"
    )
    if api_base:
        h = _split_url(api_base)
        labels = (h.label,) if h.host else ()
        if h.host is not None:
            entry = trusted.match(h.host, h.port)
            if entry is not None:
                return EndpointClass(
                    "local",
                    f"api_base {h.label} is listed in [privacy] trusted_hosts ('{entry}')",
                    ref,
                    kind,
                    hosted or provider,
                    labels,
                )
            if _is_loopback(h.host):
                return EndpointClass(
                    "remote",
                    f"{what}; its loopback api_base {h.label} is treated as a proxy or tunnel to "
                    "it (list the host in [privacy] trusted_hosts if the model really runs here)",
                    ref,
                    kind,
                    hosted or provider,
                    labels,
                )
        return EndpointClass(
            "remote",
            f"{what}; api_base {h.label if h.host else repr(api_base)} is not trusted",
            ref,
            kind,
            hosted or provider,
            labels,
        )
    return EndpointClass(
        "remote", f"{what}: requests go over the internet", ref, kind, hosted or provider
    )


@dataclass
class EndpointReport:
    """Every endpoint of a configuration, classified (for ``doctor`` and the banner)."""

    entries: list[tuple[str, EndpointClass]] = field(default_factory=list)

    def add(self, role: str, cls: EndpointClass) -> None:
        self.entries.append((role, cls))

    def lines(self) -> list[str]:
        return [f"{role}: {c.model} — {c.where} ({c.reason})" for role, c in self.entries]
