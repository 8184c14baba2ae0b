"""Token log-probabilities for the embedded engine, at the cost of one softmax per token.

llama-cpp-python returns ``logprobs`` only for models loaded with ``logits_all=True``,
which keeps the logits of every prompt position: ~2.5 GB more memory at ``n_ctx=4096`` on
the 0.5B model's 152k-token vocabulary, and a prompt that took 37 s took 65 s (measured
on the 2-core reference machine). :class:`LogprobRecorder` instead runs as a logits
processor: at each step it sees the raw logits (before the JSON grammar, the repeat
penalty and the sampler) and, at the next step, the token that was chosen — so it
records exactly the values ``create_chat_completion(logprobs=True)`` reports, for
about 1 ms a token — and, from the same distribution, the log-probabilities of the
:data:`~tandem.workers.backends._base.TOP_LOGPROBS` likeliest tokens of each step.
"""

from __future__ import annotations

from typing import Any

from tandem.workers.backends._base import TOP_LOGPROBS, TokenLogprob

__all__ = ["LogprobRecorder"]


class LogprobRecorder:
    """A no-op logits processor that records the log-probability of each sampled token.

    The token sampled at step *t* is known only at step *t + 1* (it is the last input
    id), so the distribution of one step is kept until the next. The final token of a
    reply cut off by ``max_tokens`` therefore has no entry; one ended by the model does
    (its end-of-generation step reveals the last real token).
    """

    def __init__(self) -> None:
        self._pending: tuple[Any, float, list[float]] | None = None  # the last step's logits,
        # their logsumexp and the likeliest tokens' log-probabilities
        self.tokens: list[tuple[int, float, list[float]]] = []
        """``(token id, logprob, likeliest log-probabilities)`` per generated token, in order."""

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import numpy as np

        if self._pending is not None:
            logits, norm, likeliest = self._pending
            token = int(input_ids[-1])
            self.tokens.append((token, float(logits[token]) - norm, likeliest))
        x = np.asarray(scores, dtype=np.float32)
        top = float(x.max())
        norm = top + float(np.log(np.exp(x - top, dtype=np.float64).sum()))
        k = min(TOP_LOGPROBS, x.shape[-1])
        best = np.sort(np.partition(x, -k)[-k:])[::-1]
        self._pending = (x.copy(), norm, [float(v) - norm for v in best])
        return scores

    def entries(self, llm: Any) -> list[TokenLogprob]:
        """The recorded tokens as :class:`TokenLogprob`, text and bytes from ``llm``."""
        out = []
        for token, logprob, likeliest in self.tokens:
            raw = bytes(llm.detokenize([token]))
            text = raw.decode("utf-8", errors="replace")
            out.append(TokenLogprob(token=text, logprob=logprob, bytes=list(raw), top=likeliest))
        return out
