"""Token log-probabilities for the embedded engine, at the cost of one softmax per token.

llama-cpp-python returns ``logprobs`` only for models loaded with ``logits_all=True``,
which keeps the logits of every prompt position: ~2.5 GB more memory at ``n_ctx=4096`` on
the 0.5B model's 152k-token vocabulary, and a prompt that took 37 s took 65 s (measured
on the 2-core reference machine). :class:`LogprobRecorder` instead runs as a logits
processor: at each step it sees the raw logits (before the JSON grammar, the repeat
penalty and the sampler) and, at the next step, the token that was chosen — so it
records exactly the values ``create_chat_completion(logprobs=True)`` reports, for
about 1 ms a token.
"""

from __future__ import annotations

from typing import Any

from tandem.workers.backends._base import TokenLogprob

__all__ = ["LogprobRecorder"]


class LogprobRecorder:
    """A no-op logits processor that records the log-probability of each sampled token.

    The token sampled at step *t* is known only at step *t + 1* (it is the last input
    id), so the distribution of one step is kept until the next. The final token of a
    reply cut off by ``max_tokens`` therefore has no entry; one ended by the model does
    (its end-of-generation step reveals the last real token).
    """

    def __init__(self) -> None:
        self._pending: tuple[Any, float] | None = None  # (logits, logsumexp) of the last step
        self.tokens: list[tuple[int, float]] = []
        """``(token id, logprob)`` per generated token, in order."""

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import numpy as np

        if self._pending is not None:
            logits, norm = self._pending
            token = int(input_ids[-1])
            self.tokens.append((token, float(logits[token]) - norm))
        x = np.asarray(scores, dtype=np.float32)
        top = float(x.max())
        norm = top + float(np.log(np.exp(x - top, dtype=np.float64).sum()))
        self._pending = (x.copy(), norm)
        return scores

    def entries(self, llm: Any) -> list[TokenLogprob]:
        """The recorded tokens as :class:`TokenLogprob`, text and bytes from ``llm``."""
        out = []
        for token, logprob in self.tokens:
            raw = bytes(llm.detokenize([token]))
            text = raw.decode("utf-8", errors="replace")
            out.append(TokenLogprob(token=text, logprob=logprob, bytes=list(raw)))
        return out
