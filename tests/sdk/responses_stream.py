#!/usr/bin/env python3
"""Talks to an OpenAI-compatible server with the official OpenAI Python SDK, streaming.

It checks that the SDK's own stream helpers accept what the server sends:
`client.responses.stream(...)` (which checks the Responses API event sequence event by event)
and `client.chat.completions.create(stream=True)`. It prints the final text of each, one line
apiece (`responses: <text>`, `chat: <text>`), and exits 0 when both streams arrive whole.

Usage: responses_stream.py BASE_URL [--model MODEL]
  BASE_URL             the API root, e.g. http://127.0.0.1:18789/v1 (a mock node or a gateway)
  --model MODEL        the model to ask for (default: openclaw)
Environment:
  OPENAI_API_KEY       sent as `Authorization: Bearer ...` (default: a placeholder)
  EXTRA_HEADERS_JSON   a JSON object of extra request headers, e.g. '{"X-Gateway-Key": "exo_..."}'

Exit codes: 0 success, 1 a check failed, 2 bad arguments, 3 the openai package is missing.
"""

import argparse
import json
import os
import sys

try:
    import openai
except ImportError:
    print(
        "the openai package is missing: python3 -m pip install openai "
        "(.ci/run installs it)",
        file=sys.stderr,
    )
    sys.exit(3)

QUESTION = "Plan my week"

# The Responses API events a whole answer consists of, in order (deltas may repeat).
RESPONSE_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def extra_headers():
    raw = os.environ.get("EXTRA_HEADERS_JSON", "").strip()
    if not raw:
        return {}
    try:
        headers = json.loads(raw)
    except json.JSONDecodeError as e:
        print(f"EXTRA_HEADERS_JSON is not JSON: {e}", file=sys.stderr)
        sys.exit(2)
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        print("EXTRA_HEADERS_JSON must be an object of strings", file=sys.stderr)
        sys.exit(2)
    return headers


def stream_response(client, model):
    """The Responses API through `client.responses.stream()`: returns the final text."""
    kinds = []
    deltas = []
    with client.responses.stream(model=model, input=QUESTION) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    collapsed = [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]]
    check(collapsed == RESPONSE_EVENTS, f"Responses events out of order: {kinds}")
    text = final.output_text
    check(text and text == "".join(deltas), f"final text {text!r} is not the deltas {deltas!r}")
    check(QUESTION in text, f"the answer does not echo the question: {text!r}")
    check(final.usage is not None and final.usage.total_tokens > 0, f"no usage: {final.usage}")
    return text


def stream_chat(client, model):
    """A streamed chat completion with usage: returns the final text."""
    deltas = []
    usage = None
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                deltas.append(choice.delta.content)
    text = "".join(deltas)
    check(QUESTION in text, f"the answer does not echo the question: {text!r}")
    check(usage is not None and usage.total_tokens > 0, f"no usage chunk: {usage}")
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url", help="API root, e.g. http://127.0.0.1:18789/v1")
    parser.add_argument("--model", default="openclaw")
    args = parser.parse_args()
    client = openai.OpenAI(
        base_url=args.base_url,
        api_key=os.environ.get("OPENAI_API_KEY") or "sk-placeholder",
        default_headers=extra_headers(),
        max_retries=0,
        timeout=30,
    )
    try:
        print(f"responses: {stream_response(client, args.model)}", flush=True)
        print(f"chat: {stream_chat(client, args.model)}", flush=True)
    except (CheckFailed, openai.OpenAIError, RuntimeError) as e:
        print(f"openai {openai.__version__}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
