"""The standard supervisor pattern, built the way LangGraph's docs build it.

``langgraph_supervisor.create_supervisor`` hands off (tool calls) to
``create_react_agent`` worker agents; every agent runs on the large model, and
each worker agent retrieves through a search tool over the same Chroma store
tandem's worker uses. The model is an OpenAI chat-completions endpoint (the fake
server here); ``langchain-openai`` is not a tandem dependency, so a minimal
``BaseChatModel`` over the ``openai`` SDK stands in for ``ChatOpenAI``.

:func:`scripted_responder` is the deterministic "large model" behind it: the
supervisor hands off to the expected specialists one at a time, then answers;
a worker agent calls its search tool once, then answers from the best passage.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, convert_to_openai_messages
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import StructuredTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from openai import OpenAI

from tandem.graphs import Runtime
from tandem.workers._fakes.ollama_server import words

__all__ = ["OpenAIChat", "build_baseline", "scripted_responder"]


class OpenAIChat(BaseChatModel):
    """A minimal ChatOpenAI: chat completions with tool calls over the ``openai`` SDK."""

    base_url: str
    model: str = "fake-large"
    timeout: float = 30.0

    @property
    def _llm_type(self) -> str:
        return "openai-chat-minimal"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:  # type: ignore[override]
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        client = OpenAI(base_url=self.base_url, api_key="bench", timeout=self.timeout)
        kwargs.pop("tool_choice", None)
        response = client.chat.completions.create(
            model=self.model,
            messages=convert_to_openai_messages(messages),  # type: ignore[arg-type]
            **kwargs,
        )
        msg = response.choices[0].message
        calls = [
            {"name": c.function.name, "args": json.loads(c.function.arguments or "{}"), "id": c.id}
            for c in (msg.tool_calls or [])
        ]
        usage = response.usage
        meta = {
            "input_tokens": usage.prompt_tokens if usage else 0,
            "output_tokens": usage.completion_tokens if usage else 0,
            "total_tokens": usage.total_tokens if usage else 0,
        }
        ai = AIMessage(content=msg.content or "", tool_calls=calls, usage_metadata=meta)  # type: ignore[arg-type]
        return ChatResult(generations=[ChatGeneration(message=ai)])


def _tool_call(n: int, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": f"call_{n}_{name}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
        ],
    }


def _best_sentence(question: str, passages: str) -> str:
    q = set(words(question))
    sentences = [s for s in re.split(r"(?<=[.!?])\s+|\n", passages) if len(s.split()) > 3]
    return max(sentences, key=lambda s: len(q & set(words(s))), default="I found nothing.")


def scripted_responder(gold: dict[str, list[str]]) -> Any:
    """Deterministic large-model behaviour for the baseline (``gold``: query → specialists)."""

    def respond(body: dict[str, Any]) -> str | dict[str, Any]:
        msgs = body.get("messages", [])
        tools = [t["function"]["name"] for t in body.get("tools") or []]
        query = next((str(m["content"]) for m in msgs if m["role"] == "user"), "")
        if any(t.startswith("transfer_to_") for t in tools):  # the supervisor
            handed = sum(
                1
                for m in msgs
                for c in m.get("tool_calls") or []
                if c["function"]["name"].startswith("transfer_to_")
            )
            wanted = gold.get(query, [])
            if handed < len(wanted):
                return _tool_call(len(msgs), f"transfer_to_{wanted[handed]}_expert", {})
            answers = [
                str(m["content"])
                for m in msgs
                if m["role"] == "assistant" and m.get("content") and not m.get("tool_calls")
            ]
            return " ".join(answers) or "I cannot help with that."
        search = next((t for t in tools if t.startswith("search_")), None)
        last = msgs[-1] if msgs else {}
        if search and not (last.get("role") == "tool" and "transferred" not in last["content"]):
            return _tool_call(len(msgs), search, {"query": query})
        return _best_sentence(query, str(last.get("content", "")))

    return respond


def _searcher(collection: Any) -> Any:
    def search(query: str) -> str:
        """Search this specialist's documents."""
        # The collection embeds the query with tandem's own embedding function, so the
        # baseline retrieves exactly what tandem's worker would.
        res = collection.query(query_texts=[query], n_results=4)
        return "\n\n".join(res["documents"][0])

    return search


def build_baseline(rt: Runtime, base_url: str) -> Any:
    """The compiled supervisor graph: one react agent per tandem worker, same stores."""
    from langgraph_supervisor import create_supervisor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langgraph.prebuilt import create_react_agent

    llm = OpenAIChat(base_url=base_url)
    agents = []
    for name, spec in rt.specs.items():
        tool = StructuredTool.from_function(
            _searcher(rt.stores[name]._coll()),
            name=f"search_{name}",
            description=f"Search the {name} documents.",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            agents.append(
                create_react_agent(
                    llm,
                    [tool],
                    name=f"{name}_expert",
                    prompt=f"You are the {name} expert. {spec.description} "
                    "Use your search tool and answer from what it returns.",
                )
            )
    names = ", ".join(f"{n}_expert" for n in rt.specs)
    workflow = create_supervisor(
        agents,
        model=llm,
        prompt=f"You are a team supervisor managing these experts: {names}. "
        "Hand each part of the question to the right expert, then answer the user.",
    )
    return workflow.compile()
